//! One portable schema for Postgres and SQLite: text ids, BIGINT unix-millisecond instants.
diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        last_seen -> Nullable<BigInt>,
        calls_seen_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        last_used_at -> BigInt,
        expires_at -> BigInt,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    friend_requests (from_id, to_id) {
        from_id -> Text,
        to_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    friendships (user_id, friend_id) {
        user_id -> Text,
        friend_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    blocks (blocker_id, blocked_id) {
        blocker_id -> Text,
        blocked_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    calls (id) {
        id -> Text,
        caller_id -> Text,
        callee_id -> Text,
        media -> Text,
        created_at -> BigInt,
        answered_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        outcome -> Nullable<Text>,
        end_reason -> Nullable<Text>,
        owner -> Nullable<Text>,
    }
}

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    push_subscriptions (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        endpoint -> Text,
        p256dh -> Text,
        auth -> Text,
        created_at -> BigInt,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(push_subscriptions -> sessions (token_hash));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    friend_requests,
    friendships,
    blocks,
    calls,
    settings,
    push_subscriptions
);
