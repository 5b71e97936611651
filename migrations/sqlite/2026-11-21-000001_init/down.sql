DROP TABLE settings;
DROP TABLE calls;
DROP TABLE blocks;
DROP TABLE friendships;
DROP TABLE friend_requests;
DROP TABLE sessions;
DROP TABLE users;
