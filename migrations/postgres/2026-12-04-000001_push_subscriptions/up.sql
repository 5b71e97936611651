-- Web Push: at most one subscription per session (the browser that signed in with it). It
-- goes with its session (logout, revocation, account deletion) through the foreign key.
CREATE TABLE push_subscriptions (
    token_hash TEXT PRIMARY KEY REFERENCES sessions(token_hash) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user_id ON push_subscriptions(user_id);
