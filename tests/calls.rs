//! Calls over the WebSocket and REST: ringing, accept, reject, cancel, timeouts, busy, glare,
//! hangup, reconnect grace, signaling, and the call history they leave behind.
mod common;

use common::ws::{WsClient, SDP};
use common::{spawn_app, spawn_app_on, spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    invite_rings_every_callee_device_and_accept_stops_the_others,
    reject_ends_the_call_as_declined_everywhere,
    reasons_are_stored_without_control_characters,
    cancel_while_ringing_is_a_missed_call_for_the_callee,
    unanswered_calls_end_as_no_answer,
    calling_someone_offline_is_unavailable_at_once_and_missed,
    busy_and_dnd_callees_give_busy_and_a_missed_call,
    a_caller_in_a_call_cannot_start_another,
    blocking_the_peer_ends_the_call,
    only_friends_can_be_called,
    glare_merges_two_invites_into_one_accepted_call,
    hangup_completes_the_call_for_both_and_busy_presence_follows,
    a_dropped_participant_can_resume_within_the_grace,
    a_participant_gone_past_the_grace_ends_the_call_as_connection_lost,
    a_callee_device_dropping_while_ringing_only_stops_that_device,
    a_callee_device_connecting_while_ringing_sees_the_call_and_can_accept,
    signals_flow_only_between_the_two_devices_of_an_active_call,
    invalid_sdp_is_refused_and_not_relayed,
    history_lists_calls_with_outcomes_for_participants_only,
    rest_can_start_and_end_calls_through_the_router,
    calls_left_open_by_a_crash_are_closed_as_failed_at_start,
    deleting_an_account_ends_its_calls_and_keeps_the_other_partys_history,
    a_participant_resuming_within_the_call_grace_does_not_flap_for_friends,
    a_participant_who_stops_reading_is_closed_and_nobody_else_notices,
    a_participant_whose_socket_is_full_is_dropped_from_the_call_with_bounded_memory,
    a_call_id_no_call_could_have_is_not_found,
);

/// An id with a NUL byte (which Postgres refuses) is no call's: 404, not a 500.
async fn a_call_id_no_call_could_have_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register("ann").await;
    let reply = app.get("/api/v1/calls/a%00b", &token).await;
    assert_eq!((reply.status, reply.code()), (404, "call_not_found"));
}

struct Pair {
    app: TestApp,
    amy: String,
    ben: String,
}

async fn pair(backend: Backend) -> Pair {
    let app = spawn_app(backend).await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    Pair { app, amy, ben }
}

async fn invite(ws: &mut WsClient, to: &str) -> String {
    let ack = ws
        .ok(json!({"type": "call.invite", "to": to, "media": "video"}))
        .await;
    assert_eq!(ack["merged"], false);
    ack["call_id"].as_str().expect("call_id").to_owned()
}

/// amy calls ben and his device rings: returns both sockets and the call id.
async fn ringing_call(p: &Pair) -> (WsClient, WsClient, String) {
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_ws, _) = p.app.ws_login(&p.ben).await;
    let id = invite(&mut amy_ws, "ben").await;
    ben_ws.recv_type("call.incoming").await;
    (amy_ws, ben_ws, id)
}

/// amy calls ben, ben accepts: returns both sockets and the call id.
async fn active_call(p: &Pair) -> (WsClient, WsClient, String) {
    let (mut amy_ws, mut ben_ws, id) = ringing_call(p).await;
    ben_ws
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    amy_ws.recv_type("call.accepted").await;
    (amy_ws, ben_ws, id)
}

/// The history once its newest call has ended (its records are written by the recorder just
/// after the frames go out, and may take longer than the 150 ms waited first when the machine
/// is busy), or as it is after 5 s.
async fn history(app: &TestApp, token: &str) -> Value {
    // Calls placed just now may not be written yet at all.
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app.get("/api/v1/calls", token).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let newest = &reply.body["calls"][0]["outcome"];
        let settled = newest != "ringing" && newest != "active";
        if settled || std::time::Instant::now() > deadline {
            return reply.body;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn invite_rings_every_callee_device_and_accept_stops_the_others(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_phone, _) = p.app.ws_login(&p.ben).await;
    let (mut ben_laptop, _) = p.app.ws_login(&p.ben).await;

    let id = invite(&mut amy_ws, "ben").await;
    let incoming = json!({"type": "call.incoming", "call_id": id, "from": "amy", "display_name": "amy", "media": "video"});
    assert_eq!(ben_phone.recv_type("call.incoming").await, incoming);
    assert_eq!(ben_laptop.recv_type("call.incoming").await, incoming);
    assert_eq!(
        amy_ws.recv_type("call.ringing").await,
        json!({"type": "call.ringing", "call_id": id})
    );

    ben_laptop
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    let accepted = amy_ws.recv_type("call.accepted").await;
    assert_eq!(accepted["call_id"], id.as_str());
    assert_eq!(accepted["peer"], "ben");
    assert_eq!(accepted["offerer"], true);
    assert_eq!(
        ben_phone.recv_type("call.answered_elsewhere").await,
        json!({"type": "call.answered_elsewhere", "call_id": id})
    );
    let late = ben_phone
        .request(json!({"type": "call.accept", "call_id": id}))
        .await;
    assert_eq!(late["error"], "invalid_transition");
}

async fn reject_ends_the_call_as_declined_everywhere(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_a, _) = p.app.ws_login(&p.ben).await;
    let (mut ben_b, _) = p.app.ws_login(&p.ben).await;
    let id = invite(&mut amy_ws, "ben").await;
    ben_a.recv_type("call.incoming").await;
    ben_b.recv_type("call.incoming").await;
    let wrong_side = amy_ws
        .request(json!({"type": "call.reject", "call_id": id}))
        .await;
    assert_eq!(wrong_side["error"], "invalid_transition");
    ben_a
        .ok(json!({"type": "call.reject", "call_id": id, "reason": "in a meeting"}))
        .await;
    amy_ws.expect_ended(&id, "declined").await;
    ben_b.expect_ended(&id, "declined").await;
    let calls = history(&p.app, &p.amy).await;
    assert_eq!(calls["calls"][0]["outcome"], "declined");
    assert_eq!(calls["calls"][0]["end_reason"], "in a meeting");
}

/// A reason is the client's free text: a NUL (which Postgres text refuses) or a newline in it
/// must not lose the call's record. They are stored as spaces, trimmed; blank is no reason.
async fn reasons_are_stored_without_control_characters(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = ringing_call(&p).await;
    ben_ws
        .ok(json!({"type": "call.reject", "call_id": id, "reason": "in a\u{0}meeting\n\u{7}"}))
        .await;
    amy_ws.recv_type("call.ended").await;
    let id = invite(&mut amy_ws, "ben").await;
    ben_ws.recv_type("call.incoming").await;
    ben_ws
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    amy_ws.recv_type("call.accepted").await;
    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": id, "reason": "\u{0}\r\n "}))
        .await;
    ben_ws.recv_type("call.ended").await;
    let calls = history(&p.app, &p.amy).await;
    assert_eq!(calls["calls"].as_array().unwrap().len(), 2, "{calls}");
    assert_eq!(calls["calls"][0]["outcome"], "completed");
    assert!(
        calls["calls"][0]
            .get("end_reason")
            .is_none_or(|r| r.is_null()),
        "{calls}"
    );
    assert_eq!(calls["calls"][1]["outcome"], "declined");
    assert_eq!(calls["calls"][1]["end_reason"], "in a meeting");
}

async fn cancel_while_ringing_is_a_missed_call_for_the_callee(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = ringing_call(&p).await;
    let wrong_side = ben_ws
        .request(json!({"type": "call.cancel", "call_id": id}))
        .await;
    assert_eq!(wrong_side["error"], "invalid_transition");
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    ben_ws.expect_ended(&id, "cancelled").await;
    let calls = history(&p.app, &p.ben).await;
    assert_eq!(calls["missed_count"], 1);
    assert_eq!(calls["calls"][0]["missed"], true);
    assert_eq!(calls["calls"][0]["direction"], "incoming");
    let (_, welcome) = p.app.ws_login(&p.ben).await;
    assert_eq!(welcome["missed_calls"], 1);
    assert_eq!(
        p.app
            .post("/api/v1/calls/seen", &p.ben, json!({}))
            .await
            .status,
        204
    );
    let (_, welcome) = p.app.ws_login(&p.ben).await;
    assert_eq!(welcome["missed_calls"], 0);
}

async fn unanswered_calls_end_as_no_answer(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = ringing_call(&p).await;
    // The test ring timeout is 800 ms.
    amy_ws.expect_ended(&id, "no_answer").await;
    ben_ws.expect_ended(&id, "no_answer").await;
    assert_eq!(history(&p.app, &p.ben).await["missed_count"], 1);
}

async fn calling_someone_offline_is_unavailable_at_once_and_missed(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let id = invite(&mut amy_ws, "ben").await;
    amy_ws.expect_ended(&id, "unavailable").await;
    assert_eq!(
        history(&p.app, &p.ben).await["calls"][0]["outcome"],
        "unavailable"
    );
    let (_, welcome) = p.app.ws_login(&p.ben).await;
    assert_eq!(welcome["missed_calls"], 1);
}

async fn busy_and_dnd_callees_give_busy_and_a_missed_call(backend: Backend) {
    let p = pair(backend).await;
    let cat = p.app.register("cat").await;
    p.app.befriend(&cat, "ben", &p.ben, "cat").await;
    let (_amy_ws, mut ben_ws, _) = active_call(&p).await;
    let (mut cat_ws, _) = p.app.ws_login(&cat).await;
    let id = invite(&mut cat_ws, "ben").await;
    cat_ws.expect_ended(&id, "busy").await;
    ben_ws
        .expect_none(Duration::from_millis(200), |f| f["type"] == "call.incoming")
        .await;
    let calls = history(&p.app, &p.ben).await;
    assert_eq!(calls["missed_count"], 1);

    let dave = p.app.register("dave").await;
    p.app.befriend(&dave, "cat", &cat, "dave").await;
    let (mut dave_ws, _) = p.app.ws_login(&dave).await;
    cat_ws
        .ok(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    let id = invite(&mut dave_ws, "cat").await;
    dave_ws.expect_ended(&id, "busy").await;
    cat_ws
        .expect_none(Duration::from_millis(200), |f| f["type"] == "call.incoming")
        .await;
}

async fn a_caller_in_a_call_cannot_start_another(backend: Backend) {
    let p = pair(backend).await;
    let cat = p.app.register("cat").await;
    p.app.befriend(&p.amy, "cat", &cat, "amy").await;
    let (mut amy_ws, _ben_ws, _) = active_call(&p).await;
    let second = amy_ws
        .request(json!({"type": "call.invite", "to": "cat", "media": "audio"}))
        .await;
    assert_eq!(second["error"], "already_in_call");
}

async fn blocking_the_peer_ends_the_call(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = active_call(&p).await;
    assert_eq!(p.app.put("/api/v1/blocks/amy", &p.ben).await.status, 204);
    amy_ws.expect_ended(&id, "completed").await;
    ben_ws.expect_ended(&id, "completed").await;
}

async fn only_friends_can_be_called(backend: Backend) {
    let p = pair(backend).await;
    let cat = p.app.register("cat").await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let stranger = amy_ws
        .request(json!({"type": "call.invite", "to": "cat", "media": "audio"}))
        .await;
    assert_eq!(stranger["error"], "not_friends");
    let unknown = amy_ws
        .request(json!({"type": "call.invite", "to": "nobody", "media": "audio"}))
        .await;
    assert_eq!(unknown["error"], "not_friends");
    let myself = amy_ws
        .request(json!({"type": "call.invite", "to": "AMY", "media": "audio"}))
        .await;
    assert_eq!(myself["error"], "cannot_call_self");
    let bad_media = amy_ws
        .request(json!({"type": "call.invite", "to": "ben", "media": "hologram"}))
        .await;
    assert_eq!(bad_media["error"], "invalid_frame");
    // A block looks exactly like not being friends.
    p.app.put("/api/v1/blocks/amy", &p.ben).await;
    let blocked = amy_ws
        .request(json!({"type": "call.invite", "to": "ben", "media": "audio"}))
        .await;
    assert_eq!(
        (blocked["error"].clone(), blocked["message"].clone()),
        (stranger["error"].clone(), stranger["message"].clone())
    );
    drop(cat);
}

async fn glare_merges_two_invites_into_one_accepted_call(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = ringing_call(&p).await;
    let merged = ben_ws
        .ok(json!({"type": "call.invite", "to": "amy", "media": "video"}))
        .await;
    assert_eq!(
        (merged["call_id"].as_str(), merged["merged"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let amy_side = amy_ws.recv_type("call.accepted").await;
    let ben_side = ben_ws.recv_type("call.accepted").await;
    assert_eq!(
        (amy_side["offerer"].as_bool(), ben_side["offerer"].as_bool()),
        (Some(true), Some(false))
    );
    // It is a real active call: signals flow.
    amy_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    assert_eq!(ben_ws.recv_type("signal").await["kind"], "offer");
}

async fn hangup_completes_the_call_for_both_and_busy_presence_follows(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = active_call(&p).await;
    amy_ws
        .recv_where(|f| f["type"] == "presence" && f["username"] == "ben" && f["status"] == "busy")
        .await;
    assert_eq!(
        p.app.get("/api/v1/friends", &p.amy).await.body["friends"][0]["presence"],
        "busy"
    );
    ben_ws
        .ok(json!({"type": "call.hangup", "call_id": id, "reason": "bye"}))
        .await;
    amy_ws.expect_ended(&id, "completed").await;
    ben_ws.expect_ended(&id, "completed").await;
    amy_ws
        .recv_where(|f| {
            f["type"] == "presence" && f["username"] == "ben" && f["status"] == "online"
        })
        .await;
    let again = amy_ws
        .request(json!({"type": "call.hangup", "call_id": id}))
        .await;
    assert_eq!(again["error"], "call_not_found");
    let call = &history(&p.app, &p.amy).await["calls"][0];
    assert_eq!(call["outcome"], "completed");
    assert_eq!(call["direction"], "outgoing");
    assert_eq!(call["peer"], "ben");
    assert!(call["answered_at"].is_string() && call["ended_at"].is_string());
}

async fn a_dropped_participant_can_resume_within_the_grace(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, ben_ws, id) = active_call(&p).await;
    ben_ws.close().await;
    let (mut ben_again, welcome) = p.app.ws_login(&p.ben).await;
    assert_eq!(welcome["calls"][0]["call_id"], id.as_str());
    assert_eq!(welcome["calls"][0]["state"], "active");
    ben_again
        .ok(json!({"type": "call.resume", "call_id": id}))
        .await;
    // The call goes on past the grace (500 ms in tests) and signals reach the new device.
    actix_rt::time::sleep(Duration::from_millis(700)).await;
    amy_ws.ok(json!({"type": "signal", "call_id": id, "kind": "candidate", "candidate": {"candidate": "c"}})).await;
    let signal = ben_again.recv_type("signal").await;
    assert_eq!(signal["candidate"], json!({"candidate": "c"}));
    amy_ws
        .expect_none(Duration::from_millis(10), |f| f["type"] == "call.ended")
        .await;
}

async fn a_participant_gone_past_the_grace_ends_the_call_as_connection_lost(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, ben_ws, id) = active_call(&p).await;
    ben_ws.close().await;
    amy_ws.expect_ended(&id, "connection_lost").await;
    assert_eq!(
        history(&p.app, &p.amy).await["calls"][0]["outcome"],
        "connection_lost"
    );
}

async fn a_callee_device_dropping_while_ringing_only_stops_that_device(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_a, _) = p.app.ws_login(&p.ben).await;
    let (mut ben_b, _) = p.app.ws_login(&p.ben).await;
    let id = invite(&mut amy_ws, "ben").await;
    ben_a.recv_type("call.incoming").await;
    ben_b.recv_type("call.incoming").await;
    ben_a.close().await;
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    ben_b
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    assert_eq!(
        amy_ws.recv_type("call.accepted").await["call_id"],
        id.as_str()
    );
}

async fn a_callee_device_connecting_while_ringing_sees_the_call_and_can_accept(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_old, _) = p.app.ws_login(&p.ben).await;
    let id = invite(&mut amy_ws, "ben").await;
    ben_old.recv_type("call.incoming").await;
    let (mut ben_new, welcome) = p.app.ws_login(&p.ben).await;
    assert_eq!(
        welcome["calls"],
        json!([{"call_id": id, "peer": "amy", "direction": "incoming", "media": "video", "state": "ringing"}])
    );
    ben_new
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    assert_eq!(
        amy_ws.recv_type("call.accepted").await["call_id"],
        id.as_str()
    );
    assert_eq!(
        ben_old.recv_type("call.answered_elsewhere").await["call_id"],
        id.as_str()
    );
}

async fn signals_flow_only_between_the_two_devices_of_an_active_call(backend: Backend) {
    let p = pair(backend).await;
    let cat = p.app.register("cat").await;
    let (mut amy_ws, mut ben_ws, id) = active_call(&p).await;
    let (mut ben_other, _) = p.app.ws_login(&p.ben).await;
    let (mut cat_ws, _) = p.app.ws_login(&cat).await;

    amy_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    for n in 0..5 {
        // An `sdp` riding on a candidate frame is never relayed unchecked.
        amy_ws.send(json!({"type": "signal", "call_id": id, "kind": "candidate", "sdp": "junk", "candidate": {"candidate": format!("c{n}"), "sdpMid": "0"}})).await;
    }
    let offer = ben_ws.recv_type("signal").await;
    assert_eq!(
        offer,
        json!({"type": "signal", "call_id": id, "from": "amy", "kind": "offer", "sdp": SDP})
    );
    for n in 0..5 {
        let c = ben_ws.recv_type("signal").await;
        assert_eq!(c["candidate"]["candidate"], format!("c{n}"), "in order");
        assert!(c.get("sdp").is_none(), "{c}");
    }
    ben_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "answer", "sdp": SDP}))
        .await;
    assert_eq!(amy_ws.recv_type("signal").await["from"], "ben");

    let other_device = ben_other
        .request(json!({"type": "signal", "call_id": id, "kind": "candidate", "candidate": {}}))
        .await;
    assert_eq!(other_device["error"], "forbidden");
    let stranger = cat_ws
        .request(json!({"type": "signal", "call_id": id, "kind": "candidate", "candidate": {}}))
        .await;
    assert_eq!(stranger["error"], "call_not_found");
    let no_candidate = amy_ws
        .request(json!({"type": "signal", "call_id": id, "kind": "candidate"}))
        .await;
    assert_eq!(no_candidate["error"], "invalid_frame");

    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    let finished = amy_ws
        .request(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    assert_eq!(finished["error"], "call_not_found");
    ben_other
        .expect_none(Duration::from_millis(10), |f| f["type"] == "signal")
        .await;
}

async fn invalid_sdp_is_refused_and_not_relayed(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, mut ben_ws, id) = active_call(&p).await;
    let garbage = amy_ws
        .request(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": "hello there"}))
        .await;
    assert_eq!(garbage["error"], "invalid_sdp");
    let missing = amy_ws
        .request(json!({"type": "signal", "call_id": id, "kind": "answer"}))
        .await;
    assert_eq!(missing["error"], "invalid_frame");
    ben_ws
        .expect_none(Duration::from_millis(200), |f| f["type"] == "signal")
        .await;
}

async fn history_lists_calls_with_outcomes_for_participants_only(backend: Backend) {
    let p = pair(backend).await;
    let cat = p.app.register("cat").await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let mut ids = vec![];
    for _ in 0..3 {
        let id = invite(&mut amy_ws, "ben").await;
        amy_ws.recv_type("call.ended").await;
        ids.push(id);
    }
    history(&p.app, &p.amy).await;
    let page = p.app.get("/api/v1/calls?limit=2", &p.amy).await.body;
    let listed: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = p
        .app
        .get(&format!("/api/v1/calls?limit=2&cursor={cursor}"), &p.amy)
        .await
        .body;
    assert_eq!(rest["calls"][0]["id"], ids[0].as_str());
    assert_eq!(rest["next_cursor"], Value::Null);
    let bad = p.app.get("/api/v1/calls?cursor=zzz", &p.amy).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_cursor"));
    // Well formed, but never handed out: a made-up call, a real call with another time, and
    // a real cursor shown to someone not in that call.
    let (at, real) = cursor.split_once('.').unwrap();
    for forged in [
        format!("{at}.0123456789abcdef0123456789abcdef"),
        format!("{}.{real}", at.parse::<i64>().unwrap() + 1),
    ] {
        let bad = p
            .app
            .get(&format!("/api/v1/calls?cursor={forged}"), &p.amy)
            .await;
        assert_eq!(
            (bad.status, bad.code()),
            (400, "invalid_cursor"),
            "{forged}"
        );
    }
    let strangers = p
        .app
        .get(&format!("/api/v1/calls?cursor={cursor}"), &cat)
        .await;
    assert_eq!(
        (strangers.status, strangers.code()),
        (400, "invalid_cursor")
    );

    let one = p
        .app
        .get(&format!("/api/v1/calls/{}", ids[0]), &p.ben)
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["peer"], "amy");
    assert_eq!(one.body["media"], "video");
    assert_eq!(one.body["outcome"], "unavailable");
    assert_eq!(one.body["duration_seconds"], 0);
    let stranger = p.app.get(&format!("/api/v1/calls/{}", ids[0]), &cat).await;
    assert_eq!((stranger.status, stranger.code()), (404, "call_not_found"));
}

async fn rest_can_start_and_end_calls_through_the_router(backend: Backend) {
    let p = pair(backend).await;
    let not_connected = p
        .app
        .post(
            "/api/v1/calls",
            &p.amy,
            json!({"to": "ben", "media": "audio"}),
        )
        .await;
    assert_eq!(
        (not_connected.status, not_connected.code()),
        (409, "not_connected")
    );
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_ws, _) = p.app.ws_login(&p.ben).await;
    let started = p
        .app
        .post(
            "/api/v1/calls",
            &p.amy,
            json!({"to": "ben", "media": "audio"}),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.body["call_id"].as_str().unwrap().to_owned();
    assert_eq!(ben_ws.recv_type("call.incoming").await["media"], "audio");
    assert_eq!(
        amy_ws.recv_type("call.ringing").await["call_id"],
        id.as_str()
    );
    // The callee ending a ringing call over REST declines it.
    assert_eq!(
        p.app
            .post(&format!("/api/v1/calls/{id}/end"), &p.ben, json!({}))
            .await
            .status,
        204
    );
    amy_ws.expect_ended(&id, "declined").await;
    let gone = p
        .app
        .post(&format!("/api/v1/calls/{id}/end"), &p.ben, json!({}))
        .await;
    assert_eq!((gone.status, gone.code()), (404, "call_not_found"));
    let not_friend = p
        .app
        .post(
            "/api/v1/calls",
            &p.amy,
            json!({"to": "nobody", "media": "audio"}),
        )
        .await;
    assert_eq!((not_friend.status, not_friend.code()), (403, "not_friends"));
}

async fn calls_left_open_by_a_crash_are_closed_as_failed_at_start(backend: Backend) {
    let p = pair(backend).await;
    let (_amy_ws, _ben_ws, id) = active_call(&p).await;
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    // A second broker on the same database, as after a crash of the first.
    let restarted = spawn_app_on(p.app.db.shared(), |_| {}).await;
    let call = restarted.get(&format!("/api/v1/calls/{id}"), &p.amy).await;
    assert_eq!(call.body["outcome"], "failed");
    assert!(call.body["ended_at"].is_string());
}

/// Graceful shutdown ends live calls as `server_shutdown` and writes their records.
#[actix_rt::test]
async fn shutdown_ends_calls_and_records_them() {
    let p = pair(Backend::Sqlite).await;
    let (mut amy_ws, mut ben_ws, id) = active_call(&p).await;
    let shutdown = p.app.shutdown.clone();
    actix_rt::spawn(async move { shutdown.shutdown().await });
    amy_ws.expect_ended(&id, "server_shutdown").await;
    ben_ws.expect_ended(&id, "server_shutdown").await;
    assert_eq!(amy_ws.expect_close().await.code, 1001);
    let restarted = spawn_app_on(p.app.db.shared(), |_| {}).await;
    let call = restarted.get(&format!("/api/v1/calls/{id}"), &p.amy).await;
    assert_eq!(call.body["outcome"], "server_shutdown");
}

/// ben missed a call from amy earlier; amy then deletes her account in the middle of a call with
/// him: the call ends for ben at once, her sockets close, and ben's history keeps both calls,
/// shown as with a deleted account; nobody can find or call her name any more.
async fn deleting_an_account_ends_its_calls_and_keeps_the_other_partys_history(backend: Backend) {
    let p = pair(backend).await;
    let (mut amy_ws, _) = p.app.ws_login(&p.amy).await;
    let (mut ben_ws, _) = p.app.ws_login(&p.ben).await;
    let missed = invite(&mut amy_ws, "ben").await;
    ben_ws.recv_type("call.incoming").await;
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": missed}))
        .await;
    drop((amy_ws, ben_ws));
    let (amy_ws, mut ben_ws, live) = active_call(&p).await;
    let mut amy_ws = amy_ws;

    let deleted = p
        .app
        .request(
            awc::http::Method::DELETE,
            "/api/v1/me",
            Some(&p.amy),
            Some(json!({"password": "password-amy"})),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    ben_ws.expect_ended(&live, "completed").await;
    assert_eq!(amy_ws.expect_close().await.code, 4001);

    let ben_history = history(&p.app, &p.ben).await;
    let calls = ben_history["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2, "{ben_history}");
    for call in calls {
        assert_eq!(
            (call["peer"].as_str(), call["peer_deleted"].as_bool()),
            (Some(""), Some(true))
        );
    }
    let live_row = calls
        .iter()
        .find(|c| c["id"] == live.as_str())
        .expect("the live call");
    assert_eq!(live_row["outcome"], "completed");
    let missed_row = calls
        .iter()
        .find(|c| c["id"] == missed.as_str())
        .expect("the missed call");
    assert_eq!(missed_row["missed"], true, "{missed_row}");
    // The account is gone: not found, not searchable, not callable, and its name is free.
    let found = p.app.get("/api/v1/users?q=deleted", &p.ben).await;
    assert_eq!(found.body["users"], json!([]), "{}", found.body);
    let again = ben_ws
        .request(json!({"type": "call.invite", "to": "amy", "media": "audio"}))
        .await;
    assert_eq!(again["error"], "not_friends");
    assert_eq!(p.app.register_raw("amy", "password-amy2").await.status, 201);
}

/// ben drops mid-call and is back after the presence grace (300 ms) but within the call's
/// reconnect grace (2 s here): carl, a friend of ben's, sees ben busy throughout: no offline,
/// no online, no online-then-busy when the new device connects. Once the call ends, ben is
/// online again.
async fn a_participant_resuming_within_the_call_grace_does_not_flap_for_friends(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.reconnect_grace = Duration::from_secs(2)).await;
    let p = Pair {
        amy: app.register("amy").await,
        ben: app.register("ben").await,
        app,
    };
    p.app.befriend(&p.amy, "ben", &p.ben, "amy").await;
    let carl = p.app.register("carl").await;
    p.app.befriend(&p.ben, "carl", &carl, "ben").await;
    let (mut carl_ws, _) = p.app.ws_login(&carl).await;
    let (mut amy_ws, ben_ws, id) = active_call(&p).await;
    for status in ["online", "busy"] {
        carl_ws
            .recv_where(|f| {
                f["type"] == "presence" && f["username"] == "ben" && f["status"] == status
            })
            .await;
    }

    ben_ws.close().await;
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    let (mut ben_again, _) = p.app.ws_login(&p.ben).await;
    ben_again
        .ok(json!({"type": "call.resume", "call_id": id}))
        .await;
    carl_ws
        .expect_none(Duration::from_millis(600), |f| {
            f["type"] == "presence" && f["username"] == "ben"
        })
        .await;

    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    carl_ws
        .recv_where(|f| {
            f["type"] == "presence" && f["username"] == "ben" && f["status"] == "online"
        })
        .await;
}

/// While amy's `call.invite` waits on a stalled database (another connection holds an
/// exclusive lock on `users` for 1.5 s), the signals ben relays to amy in their call still
/// arrive at once: a frame that needs the database never freezes its own socket. Postgres
/// only: SQLite readers don't wait for a lock.
#[actix_rt::test]
async fn an_invite_waiting_on_the_database_does_not_hold_back_the_sockets_other_frames() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let p = pair(backend).await;
    let carl = p.app.register("carl").await;
    p.app.befriend(&p.amy, "carl", &carl, "amy").await;
    let (mut amy_ws, mut ben_ws, id) = active_call(&p).await;

    let url = p.app.db.url.clone();
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).expect("postgres");
        conn.batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE;")
            .expect("lock");
        locked_tx.send(()).expect("told");
        std::thread::sleep(Duration::from_millis(1500));
        conn.batch_execute("COMMIT;").expect("unlock");
    });
    locked.recv().expect("locked");
    amy_ws
        .send(json!({"type": "call.invite", "id": "stalled", "to": "carl", "media": "audio"}))
        .await;
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let sent = std::time::Instant::now();
    ben_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "candidate", "candidate": {"candidate": "c"}}))
        .await;
    let relayed = amy_ws.recv_type("signal").await;
    let waited = sent.elapsed();
    assert_eq!(relayed["candidate"], json!({"candidate": "c"}));
    assert!(
        waited < Duration::from_millis(500),
        "the signal waited {waited:?} behind the stalled invite"
    );
    // The invite is answered once the database is back (amy is in a call already).
    let answer = amy_ws.recv_where(|f| f["ref"] == "stalled").await;
    assert_eq!(answer["error"], "already_in_call", "{answer}");
    holder.join().expect("lock holder");
}

/// ben accepts a call and then stops reading his socket, while amy sends him 60 KB signals at
/// 40 a second. The broker closes ben's socket (4010) once he is 1 MiB behind, long before the
/// heartbeat would, and keeps its memory; his call goes into the reconnect grace (amy's next
/// signals get `not_connected`), and carl and dan, in a call of their own, notice nothing.
async fn a_participant_who_stops_reading_is_closed_and_nobody_else_notices(backend: Backend) {
    stops_reading(backend, false).await;
}

/// The same with a tiny receive buffer on ben's side: his socket is full almost at once, so his
/// session can write nothing more and is no longer run. The frames queued for it are counted
/// at the router, which drops him from the call once 1 MiB waits for him.
async fn a_participant_whose_socket_is_full_is_dropped_from_the_call_with_bounded_memory(
    backend: Backend,
) {
    stops_reading(backend, true).await;
}

async fn stops_reading(backend: Backend, small_buffer: bool) {
    use common::process::BrokerProcess;
    use common::raw_socket::{Ending, RawSocket};
    let db = common::TestDatabase::new(backend);
    let broker = BrokerProcess::start(
        &db.url,
        &["--reconnect-grace", "30s", "--presence-grace", "500ms"],
        None,
    )
    .await;
    let address = broker.http.to_string();
    let client = awc::Client::default();
    let mut tokens = std::collections::HashMap::new();
    for name in ["amy", "ben", "carl", "dan"] {
        let mut reply = client
            .post(broker.url("/api/v1/auth/register"))
            .send_json(&json!({"username": name, "password": format!("password-{name}")}))
            .await
            .expect("registered");
        let body: Value = reply.json().await.expect("json");
        tokens.insert(name, body["token"].as_str().unwrap().to_owned());
    }
    for (a, b) in [("amy", "ben"), ("carl", "dan")] {
        let asked = client
            .post(broker.url("/api/v1/friends/requests"))
            .insert_header(("Authorization", format!("Bearer {}", tokens[a])))
            .send_json(&json!({"username": b}))
            .await
            .expect("asked");
        assert_eq!(asked.status(), 201);
        let accepted = client
            .post(broker.url(&format!("/api/v1/friends/requests/{a}/accept")))
            .insert_header(("Authorization", format!("Bearer {}", tokens[b])))
            .send()
            .await
            .expect("accepted");
        assert!(accepted.status().is_success());
    }
    let (mut amy, _) = WsClient::login(&address, &tokens["amy"]).await;
    let mut ben = if small_buffer {
        RawSocket::upgrade_with_small_buffer(&address, 4096).await
    } else {
        RawSocket::upgrade(&address).await
    };
    ben.send_text(&json!({"type": "auth", "token": tokens["ben"]}).to_string())
        .await;
    ben.recv_until(|f| f["type"] == "welcome").await;
    let id = amy
        .ok(json!({"type": "call.invite", "to": "ben", "media": "audio"}))
        .await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ben.recv_until(|f| f["type"] == "call.incoming").await;
    ben.send_text(&json!({"type": "call.accept", "id": "a", "call_id": id}).to_string())
        .await;
    ben.recv_until(|f| f["ref"] == "a").await;
    // From here on ben reads nothing.
    let (mut carl, _) = WsClient::login(&address, &tokens["carl"]).await;
    let (mut dan, _) = WsClient::login(&address, &tokens["dan"]).await;
    let other = common::ws::answered_call(&mut carl, &mut dan, "dan").await;
    let before = broker.rss_kib();

    let padding = "x".repeat(60_000);
    let started = std::time::Instant::now();
    let mut refused = None;
    for n in 0..160 {
        let reply = amy
            .request(json!({"type": "signal", "call_id": id, "kind": "candidate",
                            "candidate": {"candidate": padding}}))
            .await;
        if reply["type"] == "error" {
            refused = Some((n, reply));
            break;
        }
        // carl and dan's call goes on as if nothing happened.
        carl.ok(
            json!({"type": "signal", "call_id": other, "kind": "candidate", "candidate": {"n": n}}),
        )
        .await;
        assert_eq!(dan.recv_type("signal").await["candidate"], json!({"n": n}));
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    let (n, reply) = refused.expect("ben was never dropped");
    assert_eq!(reply["error"], "not_connected", "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ben was dropped only after {:?}, as the heartbeat would",
        started.elapsed()
    );
    let grew = broker.rss_kib().saturating_sub(before);
    eprintln!(
        "ben dropped after {n} signals ({:?}); RSS grew {grew} KiB",
        started.elapsed()
    );
    assert!(
        grew < 8 * 1024,
        "RSS grew {grew} KiB for one client that stopped reading"
    );
    if small_buffer {
        // The presence hub drops the stuck device too: once the call is over, ben goes
        // offline for his friends like anyone whose last socket left.
        amy.ok(json!({"type": "call.hangup", "call_id": id})).await;
        let offline = amy
            .recv_where(|f| {
                f["type"] == "presence" && f["username"] == "ben" && f["status"] == "offline"
            })
            .await;
        assert!(offline["last_seen"].is_string(), "{offline}");
    }
    assert_eq!(
        ben.ending(Duration::from_secs(5)).await,
        Ending::Closed(4010)
    );
}
