-- The auth backend's tables, as this service reads them. DEVELOPMENT ONLY:
-- applied on the embedded database and by `npm run db:dev-schema`; on a configured
-- database these tables belong to the Java backend and are never created or altered.
CREATE TABLE IF NOT EXISTS users_auth (
  user_id       BIGSERIAL PRIMARY KEY,
  username      TEXT NOT NULL UNIQUE,
  email         TEXT,
  password_hash TEXT,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS user_profile_info (
  user_id    BIGINT PRIMARY KEY REFERENCES users_auth(user_id) ON DELETE CASCADE,
  first_name TEXT,
  last_name  TEXT
);
CREATE TABLE IF NOT EXISTS jwt_revocation (
  jti        TEXT PRIMARY KEY,
  revoked_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS user_follows (
  follower_id BIGINT NOT NULL,
  followee_id BIGINT NOT NULL,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX IF NOT EXISTS user_follows_followee ON user_follows (followee_id);
CREATE TABLE IF NOT EXISTS blocked_relationships (
  blocker_id BIGINT NOT NULL,
  blocked_id BIGINT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX IF NOT EXISTS blocked_relationships_blocked ON blocked_relationships (blocked_id);
