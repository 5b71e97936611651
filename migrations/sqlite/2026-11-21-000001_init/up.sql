-- Instants are unix milliseconds (BIGINT) and ids are text, so one schema.rs serves
-- Postgres and SQLite alike.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT,
    calls_seen_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    user_agent   TEXT
);
CREATE INDEX sessions_user_id ON sessions(user_id);

CREATE TABLE friend_requests (
    from_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    to_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id)
);
CREATE INDEX friend_requests_to_id ON friend_requests(to_id);

-- A friendship is stored as two rows, one per direction, so "my friends" is one index scan.
CREATE TABLE friendships (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    friend_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE blocks (
    blocker_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked_id ON blocks(blocked_id);

CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    caller_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    callee_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    media       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at    BIGINT,
    outcome     TEXT,
    end_reason  TEXT
);
CREATE INDEX calls_caller ON calls(caller_id, created_at);
CREATE INDEX calls_callee ON calls(callee_id, created_at);
CREATE INDEX calls_open ON calls(ended_at);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
