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
]
