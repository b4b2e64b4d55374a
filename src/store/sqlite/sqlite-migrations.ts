/** Versioned schema changes, applied in order at start; each runs in its own transaction. Never edit one that shipped. */
export const SQLITE_MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'credentials',
    sql: `
      CREATE TABLE projects (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        company     TEXT,
        created_at  INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE members (
        id          TEXT PRIMARY KEY,
        project_id  TEXT NOT NULL REFERENCES projects(id),
        email       TEXT NOT NULL,
        first_name  TEXT,
        last_name   TEXT,
        role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        created_at  INTEGER NOT NULL,
        UNIQUE (project_id, email)
      ) STRICT;

      CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,
        project_id  TEXT NOT NULL REFERENCES projects(id),
        member_id   TEXT NOT NULL REFERENCES members(id),
        hash        TEXT NOT NULL UNIQUE,
        comment     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        deleted_at  INTEGER
      ) STRICT;
      CREATE INDEX api_keys_project ON api_keys (project_id, created_at);

      CREATE TABLE api_key_scopes (
        key_id    TEXT NOT NULL REFERENCES api_keys(id),
        position  INTEGER NOT NULL,
        scope     TEXT NOT NULL,
        PRIMARY KEY (key_id, position)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE api_key_tags (
        key_id    TEXT NOT NULL REFERENCES api_keys(id),
        position  INTEGER NOT NULL,
        tag       TEXT NOT NULL,
        PRIMARY KEY (key_id, position)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE signing_keys (
        kid         TEXT PRIMARY KEY,
        secret      BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        retired_at  INTEGER
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: 'usage',
    sql: `
      CREATE TABLE usage_requests (
        id             TEXT PRIMARY KEY,
        project_id     TEXT NOT NULL REFERENCES projects(id),
        key_id         TEXT NOT NULL,
        end_user       TEXT,
        tags           TEXT NOT NULL DEFAULT '[]',
        endpoint       TEXT NOT NULL,
        method         TEXT NOT NULL,
        path           TEXT NOT NULL,
        model          TEXT,
        started_at     INTEGER NOT NULL,
        ended_at       INTEGER,
        audio_seconds  REAL NOT NULL DEFAULT 0,
        characters     INTEGER NOT NULL DEFAULT 0,
        status         INTEGER,
        detail         TEXT
      ) STRICT;
      CREATE INDEX usage_requests_project_time ON usage_requests (project_id, started_at);
    `,
  },
  {
    version: 3,
    name: 'leaked-credentials',
    sql: `
      ALTER TABLE projects ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

      ALTER TABLE api_keys ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
      ALTER TABLE api_keys ADD COLUMN disabled_at INTEGER;
      ALTER TABLE api_keys ADD COLUMN disabled_reason TEXT;
      ALTER TABLE api_keys ADD COLUMN expiry_noted_at INTEGER;
      CREATE INDEX api_keys_expiry ON api_keys (expires_at) WHERE expires_at IS NOT NULL AND deleted_at IS NULL;

      -- Secrets a key was rerolled away from, each good until its grace period ends.
      CREATE TABLE api_key_previous_secrets (
        hash        TEXT PRIMARY KEY,
        key_id      TEXT NOT NULL REFERENCES api_keys(id),
        expires_at  INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX api_key_previous_secrets_key ON api_key_previous_secrets (key_id);

      -- Append-only: keyed by an increasing rowid, so an insert lands at the end of the table instead of at
      -- a random place in an index of random ids (which made each insert slower as the table grew). The
      -- event id is random and unique by construction; nothing looks events up by it.
      CREATE TABLE audit_events (
        seq           INTEGER PRIMARY KEY,
        id            TEXT NOT NULL,
        project_id    TEXT NOT NULL,
        at            INTEGER NOT NULL,
        type          TEXT NOT NULL,
        actor_key_id  TEXT,
        key_id        TEXT,
        end_user      TEXT,
        ip            TEXT,
        request_id    TEXT,
        detail        TEXT NOT NULL DEFAULT '{}'
      ) STRICT;
      CREATE INDEX audit_events_project_time ON audit_events (project_id, at);

      CREATE INDEX usage_requests_key_time ON usage_requests (key_id, started_at);
      CREATE INDEX usage_requests_end_user_time ON usage_requests (project_id, end_user, started_at)
        WHERE end_user IS NOT NULL;
    `,
  },
]
