//! The call state machine as plain data: `call.apply(event) -> effects`, no actix, no I/O. It
//! decides everything that follows from a transition; the router only executes the effects
//! (frames, timers, persistence, presence, relay credentials).
//!
//! ```text
//!   invite ──► Ringing ──accept──► Active ──hangup──► Ended(completed)
//!                │                   │
//!                ├─reject────────────┼──────────────► Ended(declined)
//!                ├─cancel──────────────────────────► Ended(cancelled)
//!                ├─ring timeout────────────────────► Ended(no_answer)
//!                └─grace expired─────┴─────────────► Ended(connection_lost)
//!   shutdown from any live phase ──────────────────► Ended(server_shutdown)
//! ```
use crate::ids::{CallId, DeviceId, UserId};
use crate::people::Party;
use crate::vocabulary::{EndReason, Media};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caller,
    Callee,
}

impl Role {
    /// The other side of the call.
    pub fn other(self) -> Self {
        match self {
            Role::Caller => Role::Callee,
            Role::Callee => Role::Caller,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ringing,
    Active,
    Ended(EndReason),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub id: CallId,
    pub caller: Party,
    pub callee: Party,
    pub media: Media,
    pub created_at: i64,
    pub answered_at: Option<i64>,
    pub phase: Phase,
    /// The caller's device; `None` while it is gone and the reconnect grace runs.
    pub caller_device: Option<DeviceId>,
    /// The callee device that accepted; `None` before that, or while in grace.
    pub callee_device: Option<DeviceId>,
    /// Callee devices alerted while ringing.
    pub ringing: BTreeSet<DeviceId>,
    /// Who sends the SDP offer once accepted.
    pub offerer: Role,
    /// The callee's closed apps were rung by Web Push, and have not been told it stopped.
    pub pushed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A callee device came online while the call rings; it rings too.
    DeviceJoined {
        device: DeviceId,
    },
    /// A callee device accepts. `announce` also tells that device `call.accepted` (glare,
    /// where the device never sent `call.accept`).
    Accept {
        device: DeviceId,
        offerer: Role,
        announce: bool,
    },
    Reject {
        reason: Option<String>,
    },
    Cancel,
    Hangup {
        by: Role,
        reason: Option<String>,
    },
    RingTimeout,
    /// A device went away. `revoked`: its session was revoked, so its side's relay
    /// credential for the call goes with it.
    DeviceLeft {
        device: DeviceId,
        revoked: bool,
    },
    GraceExpired {
        role: Role,
    },
    Resume {
        role: Role,
        device: DeviceId,
    },
    Shutdown,
}

/// Who a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Device(UserId, DeviceId),
}

/// What a participant is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Incoming,
    Ringing,
    Accepted {
        offerer: bool,
    },
    AnsweredElsewhere,
    /// To the side that stayed: the peer re-attached to the call and will send an offer.
    Resumed,
    Ended(EndReason),
}

/// A change to the call's stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Created {
        id: CallId,
        caller: UserId,
        callee: UserId,
        media: Media,
        at: i64,
    },
    Answered {
        id: CallId,
        at: i64,
    },
    Ended {
        id: CallId,
        at: i64,
        outcome: EndReason,
        detail: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Notify(Target, Notice),
    Persist(Record),
    StartRingTimer,
    CancelRingTimer,
    StartGrace(Role),
    CancelGrace(Role),
    /// Both participants enter (`true`) or leave a call, for `busy` presence.
    SetBusy(bool),
    /// The relay honours this side's credential for the call from now on (both sides when the
    /// call is answered, one side again when it resumes on a new device). Comes before the
    /// `call.accepted` notice that carries it.
    GrantRelay(Role),
    /// The relay refuses this side's credential for the call and drops its allocations.
    RevokeRelay(Role),
    /// The call is over: forget it.
    Release,
    /// A Web Push to the callee's closed apps (`src/push/`).
    Push(PushNotice),
}

/// What the callee's closed apps are pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushNotice {
    /// The call rings them.
    Incoming,
    /// The call they were rung for stopped ringing: ended for `Some(reason)`, or answered on
    /// one of the callee's devices (`None`). `missed` as in the history.
    Stopped {
        reason: Option<EndReason>,
        missed: bool,
    },
    /// A missed call that was not rung by push (the app closed while it rang, say).
    Missed,
}

/// Everything a new call starts from.
#[derive(Debug, Clone)]
pub struct Invite {
    pub id: CallId,
    pub caller: Party,
    pub caller_device: Option<DeviceId>,
    pub callee: Party,
    pub media: Media,
    /// Every connected device of the callee; all of them ring.
    pub callee_devices: Vec<DeviceId>,
    /// The callee is in another call or on do-not-disturb.
    pub callee_busy: bool,
    /// The callee has apps that are closed but can be rung by Web Push.
    pub callee_pushable: bool,
    /// The callee has devices on other nodes of a cluster: they ring there, and join the
    /// call as they answer that they do ([`Event::DeviceJoined`]).
    pub callee_elsewhere: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the call can't do that in its current state")]
    InvalidTransition,
}

impl Call {
    /// A new call ringing on every device of the callee, and by push on their closed apps.
    /// With neither it ends at once as `unavailable`; a busy callee ends it as `busy`.
    pub fn invite(invite: Invite, now: i64) -> (Call, Vec<Effect>) {
        let Invite {
            id,
            caller,
            caller_device,
            callee,
            media,
            callee_devices: devices,
            callee_busy,
            callee_pushable,
            callee_elsewhere,
        } = invite;
        let mut call = Call {
            id: id.clone(),
            caller: caller.clone(),
            callee: callee.clone(),
            media,
            created_at: now,
            answered_at: None,
            phase: Phase::Ringing,
            caller_device,
            callee_device: None,
            ringing: BTreeSet::new(),
            offerer: Role::Caller,
            pushed: false,
        };
        let mut effects = vec![Effect::Persist(Record::Created {
            id,
            caller: caller.user,
            callee: callee.user.clone(),
            media,
            at: now,
        })];
        if callee_busy || (devices.is_empty() && !callee_pushable && !callee_elsewhere) {
            let reason = if callee_busy {
                EndReason::Busy
            } else {
                EndReason::Unavailable
            };
            call.end(reason, None, now, &mut effects);
            return (call, effects);
        }
        for device in devices {
            effects.push(Effect::Notify(
                Target::Device(callee.user.clone(), device),
                Notice::Incoming,
            ));
            call.ringing.insert(device);
        }
        if callee_pushable {
            call.pushed = true;
            effects.push(Effect::Push(PushNotice::Incoming));
        }
        if let Some(d) = &call.caller_device {
            effects.push(Effect::Notify(
                Target::Device(call.caller.user.clone(), *d),
                Notice::Ringing,
            ));
        }
        effects.push(Effect::StartRingTimer);
        (call, effects)
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    pub fn party(&self, role: Role) -> &Party {
        match role {
            Role::Caller => &self.caller,
            Role::Callee => &self.callee,
        }
    }

    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        if *user == self.caller.user {
            Some(Role::Caller)
        } else if *user == self.callee.user {
            Some(Role::Callee)
        } else {
            None
        }
    }

    pub fn device(&self, role: Role) -> Option<&DeviceId> {
        match role {
            Role::Caller => self.caller_device.as_ref(),
            Role::Callee => self.callee_device.as_ref(),
        }
    }

    fn device_mut(&mut self, role: Role) -> &mut Option<DeviceId> {
        match role {
            Role::Caller => &mut self.caller_device,
            Role::Callee => &mut self.callee_device,
        }
    }

    fn notify(&self, role: Role, device: &DeviceId, notice: Notice, effects: &mut Vec<Effect>) {
        effects.push(Effect::Notify(
            Target::Device(self.party(role).user.clone(), *device),
            notice,
        ));
    }

    /// Applies one event in place, returning what to do about it. A refused event leaves the
    /// call exactly as it was: every refusal is decided before anything changes.
    pub fn apply(&mut self, event: Event, now: i64) -> Result<Vec<Effect>, CallError> {
        let mut fx = Vec::new();
        match (self.phase, event) {
            (Phase::Ringing, Event::DeviceJoined { device }) => {
                self.ringing.insert(device);
            }
            (
                Phase::Ringing,
                Event::Accept {
                    device,
                    offerer,
                    announce,
                },
            ) => {
                if !self.ringing.remove(&device) {
                    return Err(CallError::InvalidTransition);
                }
                self.phase = Phase::Active;
                self.answered_at = Some(now);
                self.offerer = offerer;
                self.callee_device = Some(device);
                fx.push(Effect::CancelRingTimer);
                fx.push(Effect::GrantRelay(Role::Caller));
                fx.push(Effect::GrantRelay(Role::Callee));
                if let Some(d) = self.caller_device {
                    self.notify(
                        Role::Caller,
                        &d,
                        Notice::Accepted {
                            offerer: offerer == Role::Caller,
                        },
                        &mut fx,
                    );
                }
                if announce {
                    self.notify(
                        Role::Callee,
                        &device,
                        Notice::Accepted {
                            offerer: offerer == Role::Callee,
                        },
                        &mut fx,
                    );
                }
                for other in std::mem::take(&mut self.ringing) {
                    self.notify(Role::Callee, &other, Notice::AnsweredElsewhere, &mut fx);
                }
                fx.push(Effect::Persist(Record::Answered {
                    id: self.id.clone(),
                    at: now,
                }));
                fx.push(Effect::SetBusy(true));
                if std::mem::take(&mut self.pushed) {
                    fx.push(Effect::Push(PushNotice::Stopped {
                        reason: None,
                        missed: false,
                    }));
                }
            }
            (Phase::Ringing, Event::Reject { reason }) => {
                self.end(EndReason::Declined, reason, now, &mut fx)
            }
            (Phase::Ringing, Event::Cancel) => self.end(EndReason::Cancelled, None, now, &mut fx),
            (
                Phase::Ringing,
                Event::Hangup {
                    by: Role::Caller,
                    reason,
                },
            ) => self.end(EndReason::Cancelled, reason, now, &mut fx),
            (
                Phase::Ringing,
                Event::Hangup {
                    by: Role::Callee,
                    reason,
                },
            ) => self.end(EndReason::Declined, reason, now, &mut fx),
            (Phase::Ringing, Event::RingTimeout) => {
                self.end(EndReason::NoAnswer, None, now, &mut fx)
            }
            (Phase::Active, Event::Hangup { reason, .. }) => {
                self.end(EndReason::Completed, reason, now, &mut fx)
            }
            (Phase::Ringing | Phase::Active, Event::DeviceLeft { device, revoked }) => {
                if self.ringing.remove(&device) {
                    // A ringing callee device leaving only stops that device.
                } else {
                    for role in [Role::Caller, Role::Callee] {
                        if self.device(role) == Some(&device) {
                            *self.device_mut(role) = None;
                            if revoked && self.answered_at.is_some() {
                                fx.push(Effect::RevokeRelay(role));
                            }
                            fx.push(Effect::StartGrace(role));
                        }
                    }
                }
            }
            (Phase::Ringing | Phase::Active, Event::GraceExpired { role }) => {
                if self.device(role).is_none() {
                    self.end(EndReason::ConnectionLost, None, now, &mut fx);
                }
            }
            (Phase::Ringing | Phase::Active, Event::Resume { role, device }) => {
                // While ringing only the caller has a call to resume; callee devices just ring.
                if self.phase == Phase::Ringing && role == Role::Callee {
                    return Err(CallError::InvalidTransition);
                }
                if let Some(old) = self.device(role).cloned() {
                    if old != device {
                        self.notify(role, &old, Notice::AnsweredElsewhere, &mut fx);
                    }
                }
                *self.device_mut(role) = Some(device);
                fx.push(Effect::CancelGrace(role));
                // The call may have been answered while this side was away, and a new device
                // needs its role anyway: tell it, so the offerer can renegotiate.
                if self.phase == Phase::Active {
                    // Its call credentials may have been revoked with the device it replaces.
                    fx.push(Effect::GrantRelay(role));
                    // One rule for every resume: the side that resumed offers (it may have no
                    // peer connection at all), and the side that stayed is told to expect it.
                    self.notify(role, &device, Notice::Accepted { offerer: true }, &mut fx);
                    let other = role.other();
                    if let Some(stayed) = self.device(other).cloned() {
                        self.notify(other, &stayed, Notice::Resumed, &mut fx);
                    }
                }
            }
            (Phase::Ringing | Phase::Active, Event::Shutdown) => {
                self.end(EndReason::ServerShutdown, None, now, &mut fx)
            }
            _ => return Err(CallError::InvalidTransition),
        }
        Ok(fx)
    }

    /// Ends the call: everyone still attached hears why, timers stop, the record is closed.
    fn end(&mut self, reason: EndReason, detail: Option<String>, now: i64, fx: &mut Vec<Effect>) {
        let was_active = self.phase == Phase::Active;
        self.phase = Phase::Ended(reason);
        if let Some(d) = self.caller_device {
            self.notify(Role::Caller, &d, Notice::Ended(reason), fx);
        }
        if let Some(d) = self.callee_device {
            self.notify(Role::Callee, &d, Notice::Ended(reason), fx);
        }
        for d in std::mem::take(&mut self.ringing) {
            self.notify(Role::Callee, &d, Notice::Ended(reason), fx);
        }
        fx.push(Effect::CancelRingTimer);
        fx.push(Effect::CancelGrace(Role::Caller));
        fx.push(Effect::CancelGrace(Role::Callee));
        if was_active {
            fx.push(Effect::SetBusy(false));
        }
        fx.push(Effect::Persist(Record::Ended {
            id: self.id.clone(),
            at: now,
            outcome: reason,
            detail,
        }));
        if self.answered_at.is_some() {
            fx.push(Effect::RevokeRelay(Role::Caller));
            fx.push(Effect::RevokeRelay(Role::Callee));
        }
        let missed = !was_active && reason.is_missed();
        if std::mem::take(&mut self.pushed) {
            fx.push(Effect::Push(PushNotice::Stopped {
                reason: Some(reason),
                missed,
            }));
        } else if missed {
            fx.push(Effect::Push(PushNotice::Missed));
        }
        fx.push(Effect::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apply` by value, so a test reads as a sequence of states.
    trait Step: Sized {
        fn step(self, event: Event, now: i64) -> Result<(Call, Vec<Effect>), CallError>;
    }

    impl Step for Call {
        fn step(mut self, event: Event, now: i64) -> Result<(Call, Vec<Effect>), CallError> {
            let fx = self.apply(event, now)?;
            Ok((self, fx))
        }
    }

    fn accepted_call() -> Call {
        let (call, _) = ringing_call(&["b1"]);
        let accept = Event::Accept {
            device: dev("b1"),
            offerer: Role::Caller,
            announce: false,
        };
        call.step(accept, 1).unwrap().0
    }

    fn party(name: &str) -> Party {
        Party {
            user: UserId::from(format!("id-{name}")),
            username: name.into(),
            display_name: name.into(),
        }
    }

    fn dev(name: &str) -> DeviceId {
        DeviceId::from(name.bytes().fold(0u128, |id, b| id << 8 | u128::from(b)))
    }

    fn invite(callee_devices: Vec<DeviceId>, callee_busy: bool) -> Invite {
        Invite {
            id: CallId::from("c1"),
            caller: party("ann"),
            caller_device: Some(dev("a1")),
            callee: party("bob"),
            media: Media::Video,
            callee_devices,
            callee_busy,
            callee_pushable: false,
            callee_elsewhere: false,
        }
    }

    /// The name `dev` made `device` from.
    fn name_of(device: &DeviceId) -> String {
        let bytes = u128::from(*device).to_be_bytes();
        bytes
            .iter()
            .filter(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect()
    }

    fn ringing_call(devices: &[&str]) -> (Call, Vec<Effect>) {
        Call::invite(
            invite(devices.iter().map(|d| dev(d)).collect(), false),
            1_000,
        )
    }

    fn notices(fx: &[Effect]) -> Vec<(String, Notice)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Notify(Target::Device(_, d), n) => Some((name_of(d), *n)),
                _ => None,
            })
            .collect()
    }

    fn outcome(fx: &[Effect]) -> Option<EndReason> {
        fx.iter().find_map(|e| match e {
            Effect::Persist(Record::Ended { outcome, .. }) => Some(*outcome),
            _ => None,
        })
    }

    #[test]
    fn invite_rings_every_callee_device_and_tells_the_caller() {
        let (call, fx) = ringing_call(&["b1", "b2"]);
        assert_eq!(call.phase, Phase::Ringing);
        assert_eq!(
            notices(&fx),
            vec![
                ("b1".into(), Notice::Incoming),
                ("b2".into(), Notice::Incoming),
                ("a1".into(), Notice::Ringing)
            ]
        );
        assert!(fx.contains(&Effect::StartRingTimer));
        assert!(matches!(fx[0], Effect::Persist(Record::Created { .. })));
    }

    fn pushes(fx: &[Effect]) -> Vec<PushNotice> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Push(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    fn pushed_call(devices: &[&str]) -> (Call, Vec<Effect>) {
        let mut pushable = invite(devices.iter().map(|d| dev(d)).collect(), false);
        pushable.callee_pushable = true;
        Call::invite(pushable, 1_000)
    }

    #[test]
    fn a_callee_only_on_other_nodes_rings_until_their_devices_join() {
        let mut elsewhere = invite(vec![], false);
        elsewhere.callee_elsewhere = true;
        let (call, fx) = Call::invite(elsewhere, 1_000);
        assert_eq!(call.phase, Phase::Ringing);
        assert!(pushes(&fx).is_empty());
        assert!(fx.contains(&Effect::StartRingTimer));
        let (call, _) = call
            .step(Event::DeviceJoined { device: dev("b7") }, 2)
            .unwrap();
        let accept = Event::Accept {
            device: dev("b7"),
            offerer: Role::Caller,
            announce: false,
        };
        let (call, _) = call.step(accept, 3).unwrap();
        assert_eq!(call.phase, Phase::Active);
        // Without devices anywhere it is unavailable at once, as on one node.
        let (alone, _) = Call::invite(invite(vec![], false), 1_000);
        assert_eq!(alone.phase, Phase::Ended(EndReason::Unavailable));
    }

    #[test]
    fn a_callee_with_only_closed_apps_is_rung_by_push() {
        let (call, fx) = pushed_call(&[]);
        assert_eq!(call.phase, Phase::Ringing);
        assert_eq!(pushes(&fx), vec![PushNotice::Incoming]);
        assert_eq!(notices(&fx), vec![("a1".into(), Notice::Ringing)]);
        assert!(fx.contains(&Effect::StartRingTimer));
        // A device that connects while it rings can take it.
        let (call, _) = call
            .step(Event::DeviceJoined { device: dev("b9") }, 2)
            .unwrap();
        let accept = Event::Accept {
            device: dev("b9"),
            offerer: Role::Caller,
            announce: false,
        };
        let (call, fx) = call.step(accept, 3).unwrap();
        assert_eq!(call.phase, Phase::Active);
        let stopped = PushNotice::Stopped {
            reason: None,
            missed: false,
        };
        assert_eq!(pushes(&fx), vec![stopped]);
        // Told once: the end of the answered call pushes nothing more.
        let (_, fx) = call
            .step(
                Event::Hangup {
                    by: Role::Caller,
                    reason: None,
                },
                4,
            )
            .unwrap();
        assert!(pushes(&fx).is_empty());
    }

    #[test]
    fn a_pushed_call_that_stops_ringing_says_why_and_whether_it_was_missed() {
        for (event, reason, missed) in [
            (Event::RingTimeout, EndReason::NoAnswer, true),
            (Event::Cancel, EndReason::Cancelled, true),
            (Event::Reject { reason: None }, EndReason::Declined, false),
        ] {
            let (call, _) = pushed_call(&["b1"]);
            let (_, fx) = call.step(event, 2).unwrap();
            let stopped = PushNotice::Stopped {
                reason: Some(reason),
                missed,
            };
            assert_eq!(pushes(&fx), vec![stopped]);
        }
    }

    #[test]
    fn a_missed_call_that_was_not_pushed_asks_for_a_missed_call_push() {
        let (call, _) = ringing_call(&["b1"]);
        let (_, fx) = call.step(Event::RingTimeout, 2).unwrap();
        assert_eq!(pushes(&fx), vec![PushNotice::Missed]);
        let (call, _) = ringing_call(&["b1"]);
        let (_, fx) = call.step(Event::Reject { reason: None }, 2).unwrap();
        assert!(pushes(&fx).is_empty());
    }

    #[test]
    fn invite_to_offline_or_busy_callee_ends_at_once() {
        let (call, fx) = ringing_call(&[]);
        assert_eq!(call.phase, Phase::Ended(EndReason::Unavailable));
        assert_eq!(
            notices(&fx),
            vec![("a1".into(), Notice::Ended(EndReason::Unavailable))]
        );
        let (busy, fx) = Call::invite(invite(vec![dev("b1")], true), 0);
        assert_eq!(busy.phase, Phase::Ended(EndReason::Busy));
        assert_eq!(outcome(&fx), Some(EndReason::Busy));
    }

    #[test]
    fn accept_connects_one_device_and_stops_the_others() {
        let (call, _) = ringing_call(&["b1", "b2"]);
        let (call, fx) = call
            .step(
                Event::Accept {
                    device: dev("b2"),
                    offerer: Role::Caller,
                    announce: false,
                },
                2_000,
            )
            .unwrap();
        assert_eq!(call.phase, Phase::Active);
        assert_eq!(call.callee_device, Some(dev("b2")));
        assert_eq!(
            notices(&fx),
            vec![
                ("a1".into(), Notice::Accepted { offerer: true }),
                ("b1".into(), Notice::AnsweredElsewhere)
            ]
        );
        assert!(fx.contains(&Effect::SetBusy(true)));
        assert!(fx.contains(&Effect::Persist(Record::Answered {
            id: CallId::from("c1"),
            at: 2_000
        })));
    }

    #[test]
    fn accept_from_a_device_that_is_not_ringing_is_refused() {
        let (call, _) = ringing_call(&["b1"]);
        let err = call.step(
            Event::Accept {
                device: dev("zz"),
                offerer: Role::Caller,
                announce: false,
            },
            0,
        );
        assert_eq!(err.unwrap_err(), CallError::InvalidTransition);
    }

    #[test]
    fn reject_cancel_and_timeout_end_with_their_reasons() {
        for (event, reason) in [
            (
                Event::Reject {
                    reason: Some("later".into()),
                },
                EndReason::Declined,
            ),
            (Event::Cancel, EndReason::Cancelled),
            (Event::RingTimeout, EndReason::NoAnswer),
            (
                Event::Hangup {
                    by: Role::Caller,
                    reason: None,
                },
                EndReason::Cancelled,
            ),
            (
                Event::Hangup {
                    by: Role::Callee,
                    reason: None,
                },
                EndReason::Declined,
            ),
        ] {
            let (call, _) = ringing_call(&["b1", "b2"]);
            let (call, fx) = call.step(event, 5).unwrap();
            assert_eq!(call.phase, Phase::Ended(reason));
            assert_eq!(
                notices(&fx),
                vec![
                    ("a1".into(), Notice::Ended(reason)),
                    ("b1".into(), Notice::Ended(reason)),
                    ("b2".into(), Notice::Ended(reason))
                ]
            );
            assert!(fx.contains(&Effect::Release));
            assert!(!fx.contains(&Effect::SetBusy(false)), "was never busy");
        }
    }

    #[test]
    fn hangup_of_an_active_call_completes_it_for_both() {
        let (call, _) = ringing_call(&["b1"]);
        let (call, _) = call
            .step(
                Event::Accept {
                    device: dev("b1"),
                    offerer: Role::Caller,
                    announce: false,
                },
                1,
            )
            .unwrap();
        let (call, fx) = call
            .step(
                Event::Hangup {
                    by: Role::Callee,
                    reason: Some("bye".into()),
                },
                9,
            )
            .unwrap();
        assert_eq!(call.phase, Phase::Ended(EndReason::Completed));
        assert_eq!(
            notices(&fx),
            vec![
                ("a1".into(), Notice::Ended(EndReason::Completed)),
                ("b1".into(), Notice::Ended(EndReason::Completed))
            ]
        );
        assert!(fx.contains(&Effect::SetBusy(false)));
        assert!(fx.contains(&Effect::Persist(Record::Ended {
            id: CallId::from("c1"),
            at: 9,
            outcome: EndReason::Completed,
            detail: Some("bye".into())
        })));
    }

    #[test]
    fn a_dropped_participant_gets_a_grace_period_and_can_resume() {
        let (call, _) = ringing_call(&["b1"]);
        let (call, _) = call
            .step(
                Event::Accept {
                    device: dev("b1"),
                    offerer: Role::Caller,
                    announce: false,
                },
                1,
            )
            .unwrap();
        let (call, fx) = call
            .step(
                Event::DeviceLeft {
                    device: dev("b1"),
                    revoked: false,
                },
                2,
            )
            .unwrap();
        assert_eq!(fx, vec![Effect::StartGrace(Role::Callee)]);
        let (call, fx) = call
            .step(
                Event::Resume {
                    role: Role::Callee,
                    device: dev("b9"),
                },
                3,
            )
            .unwrap();
        assert_eq!(
            fx,
            vec![
                Effect::CancelGrace(Role::Callee),
                Effect::GrantRelay(Role::Callee),
                // The callee resumed, so the callee offers now, and the caller hears of it.
                Effect::Notify(
                    Target::Device(UserId::from("id-bob"), dev("b9")),
                    Notice::Accepted { offerer: true }
                ),
                Effect::Notify(
                    Target::Device(UserId::from("id-ann"), dev("a1")),
                    Notice::Resumed
                )
            ]
        );
        assert_eq!(call.callee_device, Some(dev("b9")));
        // A late timer after resuming changes nothing.
        let (call, fx) = call
            .step(Event::GraceExpired { role: Role::Callee }, 4)
            .unwrap();
        assert!(fx.is_empty());
        assert_eq!(call.phase, Phase::Active);
    }

    #[test]
    fn grace_expiry_ends_the_call_as_connection_lost() {
        let (call, _) = ringing_call(&["b1"]);
        let (call, _) = call
            .step(
                Event::Accept {
                    device: dev("b1"),
                    offerer: Role::Caller,
                    announce: false,
                },
                1,
            )
            .unwrap();
        let (call, _) = call
            .step(
                Event::DeviceLeft {
                    device: dev("a1"),
                    revoked: false,
                },
                2,
            )
            .unwrap();
        let (call, fx) = call
            .step(Event::GraceExpired { role: Role::Caller }, 3)
            .unwrap();
        assert_eq!(call.phase, Phase::Ended(EndReason::ConnectionLost));
        assert_eq!(
            notices(&fx),
            vec![("b1".into(), Notice::Ended(EndReason::ConnectionLost))]
        );
    }

    #[test]
    fn a_ringing_callee_device_leaving_only_stops_that_device() {
        let (call, _) = ringing_call(&["b1", "b2"]);
        let (call, fx) = call
            .step(
                Event::DeviceLeft {
                    device: dev("b1"),
                    revoked: false,
                },
                2,
            )
            .unwrap();
        assert!(fx.is_empty());
        assert_eq!(call.phase, Phase::Ringing);
        assert_eq!(call.ringing.len(), 1);
    }

    #[test]
    fn glare_accept_announces_to_the_accepting_device_too() {
        let (call, _) = ringing_call(&["b1"]);
        let (_, fx) = call
            .step(
                Event::Accept {
                    device: dev("b1"),
                    offerer: Role::Caller,
                    announce: true,
                },
                1,
            )
            .unwrap();
        assert_eq!(
            notices(&fx),
            vec![
                ("a1".into(), Notice::Accepted { offerer: true }),
                ("b1".into(), Notice::Accepted { offerer: false })
            ]
        );
    }

    #[test]
    fn a_caller_resuming_after_the_answer_is_told_the_call_was_accepted() {
        let (call, _) = ringing_call(&["b1"]);
        let (call, _) = call
            .step(
                Event::DeviceLeft {
                    device: dev("a1"),
                    revoked: false,
                },
                1,
            )
            .unwrap();
        let accept = Event::Accept {
            device: dev("b1"),
            offerer: Role::Caller,
            announce: false,
        };
        let (call, fx) = call.step(accept, 2).unwrap();
        assert!(
            notices(&fx).is_empty(),
            "nobody to tell on the caller's side"
        );
        let (_, fx) = call
            .step(
                Event::Resume {
                    role: Role::Caller,
                    device: dev("a2"),
                },
                3,
            )
            .unwrap();
        // The resumer offers; the callee, who stayed, is told to expect it.
        assert_eq!(
            notices(&fx),
            vec![
                ("a2".into(), Notice::Accepted { offerer: true }),
                ("b1".into(), Notice::Resumed)
            ]
        );
    }

    #[test]
    fn ended_calls_refuse_every_event() {
        let (call, _) = ringing_call(&["b1"]);
        let (call, _) = call.step(Event::Cancel, 1).unwrap();
        for event in [
            Event::Cancel,
            Event::RingTimeout,
            Event::Shutdown,
            Event::Reject { reason: None },
        ] {
            assert_eq!(
                call.clone().step(event, 2).unwrap_err(),
                CallError::InvalidTransition
            );
        }
    }

    #[test]
    fn shutdown_ends_live_calls() {
        let (call, _) = ringing_call(&["b1"]);
        let (call, fx) = call.step(Event::Shutdown, 1).unwrap();
        assert_eq!(call.phase, Phase::Ended(EndReason::ServerShutdown));
        assert_eq!(outcome(&fx), Some(EndReason::ServerShutdown));
    }

    #[test]
    fn the_relay_is_granted_before_the_accepted_notices_and_revoked_when_the_call_ends() {
        let (call, _) = ringing_call(&["b1"]);
        let accept = Event::Accept {
            device: dev("b1"),
            offerer: Role::Caller,
            announce: false,
        };
        let (call, fx) = call.step(accept, 1).unwrap();
        let grants: Vec<&Effect> = fx
            .iter()
            .filter(|e| matches!(e, Effect::GrantRelay(_)))
            .collect();
        assert_eq!(
            grants,
            [
                &Effect::GrantRelay(Role::Caller),
                &Effect::GrantRelay(Role::Callee)
            ]
        );
        let grant = fx
            .iter()
            .rposition(|e| matches!(e, Effect::GrantRelay(_)))
            .unwrap();
        let notice = fx
            .iter()
            .position(|e| matches!(e, Effect::Notify(_, Notice::Accepted { .. })))
            .unwrap();
        assert!(
            grant < notice,
            "credentials are honoured before they are handed out"
        );
        let hangup = Event::Hangup {
            by: Role::Caller,
            reason: None,
        };
        let (_, fx) = call.step(hangup, 2).unwrap();
        let revoked: Vec<&Effect> = fx
            .iter()
            .filter(|e| matches!(e, Effect::RevokeRelay(_)))
            .collect();
        assert_eq!(
            revoked,
            [
                &Effect::RevokeRelay(Role::Caller),
                &Effect::RevokeRelay(Role::Callee)
            ]
        );
        assert_eq!(fx.last(), Some(&Effect::Release));
    }

    #[test]
    fn a_call_never_answered_has_no_relay_to_grant_or_revoke() {
        let (call, _) = ringing_call(&["b1"]);
        let (_, fx) = call.step(Event::Cancel, 1).unwrap();
        assert!(!fx
            .iter()
            .any(|e| matches!(e, Effect::GrantRelay(_) | Effect::RevokeRelay(_))));
    }

    #[test]
    fn resuming_on_another_device_grants_that_sides_relay_again() {
        let call = accepted_call();
        let left = Event::DeviceLeft {
            device: dev("b1"),
            revoked: true,
        };
        let (call, _) = call.step(left, 2).unwrap();
        let resume = Event::Resume {
            role: Role::Callee,
            device: dev("b2"),
        };
        let (_, fx) = call.step(resume, 3).unwrap();
        let grant = fx
            .iter()
            .position(|e| *e == Effect::GrantRelay(Role::Callee))
            .expect("the callee's relay is granted again");
        let notice = fx
            .iter()
            .position(|e| matches!(e, Effect::Notify(_, Notice::Accepted { .. })))
            .expect("the new device hears the call is answered");
        assert!(grant < notice);
        assert!(!fx.contains(&Effect::GrantRelay(Role::Caller)));
    }

    #[test]
    fn a_revoked_device_loses_its_sides_relay_and_keeps_the_grace() {
        let call = accepted_call();
        let left = Event::DeviceLeft {
            device: dev("b1"),
            revoked: true,
        };
        let (call, fx) = call.step(left, 2).unwrap();
        assert_eq!(
            fx,
            vec![
                Effect::RevokeRelay(Role::Callee),
                Effect::StartGrace(Role::Callee)
            ]
        );
        assert_eq!(call.phase, Phase::Active);
    }

    #[test]
    fn a_refused_event_leaves_the_call_as_it_was() {
        let mut call = accepted_call();
        let before = format!("{call:?}");
        let err = call.apply(Event::Cancel, 5).unwrap_err();
        assert_eq!(err, CallError::InvalidTransition);
        let stray_accept = Event::Accept {
            device: dev("zz"),
            offerer: Role::Caller,
            announce: false,
        };
        assert!(call.apply(stray_accept, 6).is_err());
        assert_eq!(format!("{call:?}"), before);
    }
}
