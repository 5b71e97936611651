//! Whether this node reaches Redis, as `/readyz` reports it: the command connection (checked
//! by every registration refresh) and the pub/sub connection each say up or down with why.
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    commands: Option<String>,
    pubsub: Option<String>,
}

impl Health {
    /// After joining: commands answered, pub/sub not subscribed yet.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                commands: None,
                pubsub: Some("not subscribed yet".into()),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut state)
    }

    /// Records the command connection's state; true when it just came back.
    pub fn commands(&self, result: Result<(), String>) -> bool {
        self.with(|s| {
            let was_down = s.commands.is_some();
            s.commands = result.err();
            was_down && s.commands.is_none()
        })
    }

    pub fn pubsub(&self, result: Result<(), String>) {
        self.with(|s| {
            s.pubsub = result.err();
        })
    }

    /// `Err(why)` while the command connection is down: reads would fail.
    pub fn commands_up(&self) -> Result<(), String> {
        self.with(|s| match &s.commands {
            None => Ok(()),
            Some(why) => Err(format!("redis: {why}")),
        })
    }

    /// `Err(why)` while either connection is down.
    pub fn ready(&self) -> Result<(), String> {
        self.with(|s| match (&s.commands, &s.pubsub) {
            (None, None) => Ok(()),
            (Some(why), _) => Err(format!("redis: {why}")),
            (None, Some(why)) => Err(format!("redis pub/sub: {why}")),
        })
    }
}
