/**
 * The PostgreSQL schema: the same tables, columns and constraints as the SQLite one
 * (src/store/sqlite/sqlite-migrations.ts), version for version, in PostgreSQL types. Epoch milliseconds are
 * BIGINT, JSON documents are TEXT holding JSON (read back exactly as written, as on SQLite), and ids compare
 * byte-wise (`COLLATE "C"`) so ordering ties break as they do on SQLite. Applied in order at start, each in its
 * own transaction, under an advisory lock (docs/store.md). Never edit one that shipped.
 */
export const POSTGRES_MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'credentials',
    sql: `
      CREATE TABLE projects (
        id          TEXT COLLATE "C" PRIMARY KEY,
        name        TEXT NOT NULL,
        company     TEXT,
        created_at  BIGINT NOT NULL
      );

      CREATE TABLE members (
        id          TEXT COLLATE "C" PRIMARY KEY,
        project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
        email       TEXT NOT NULL,
        first_name  TEXT,
        last_name   TEXT,
        role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        created_at  BIGINT NOT NULL,
        UNIQUE (project_id, email)
      );

      CREATE TABLE api_keys (
        id          TEXT COLLATE "C" PRIMARY KEY,
        project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
        member_id   TEXT COLLATE "C" NOT NULL REFERENCES members(id),
        hash        TEXT NOT NULL UNIQUE,
        comment     TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT,
        deleted_at  BIGINT
      );
      CREATE INDEX api_keys_project ON api_keys (project_id, created_at);

      CREATE TABLE api_key_scopes (
        key_id    TEXT COLLATE "C" NOT NULL REFERENCES api_keys(id),
        position  INTEGER NOT NULL,
        scope     TEXT NOT NULL,
        PRIMARY KEY (key_id, position)
      );

      CREATE TABLE api_key_tags (
        key_id    TEXT COLLATE "C" NOT NULL REFERENCES api_keys(id),
        position  INTEGER NOT NULL,
        tag       TEXT NOT NULL,
        PRIMARY KEY (key_id, position)
      );

      -- seq: insertion order, which breaks ties of created_at (SQLite's rowid).
      CREATE TABLE signing_keys (
        kid         TEXT COLLATE "C" PRIMARY KEY,
        seq         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        secret      BYTEA NOT NULL,
        created_at  BIGINT NOT NULL,
        retired_at  BIGINT
      );
    `,
  },
  {
    version: 2,
    name: 'usage',
    sql: `
      CREATE TABLE usage_requests (
        id             TEXT COLLATE "C" PRIMARY KEY,
        project_id     TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
        key_id         TEXT COLLATE "C" NOT NULL,
        end_user       TEXT,
        tags           TEXT NOT NULL DEFAULT '[]',
        endpoint       TEXT NOT NULL,
        method         TEXT NOT NULL,
        path           TEXT NOT NULL,
        model          TEXT,
        started_at     BIGINT NOT NULL,
        ended_at       BIGINT,
        audio_seconds  DOUBLE PRECISION NOT NULL DEFAULT 0,
        characters     INTEGER NOT NULL DEFAULT 0,
        status         INTEGER,
        detail         TEXT
      );
      CREATE INDEX usage_requests_project_time ON usage_requests (project_id, started_at);
    `,
  },
  {
    version: 3,
    name: 'leaked-credentials',
    sql: `
      ALTER TABLE projects ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

      ALTER TABLE api_keys ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
      ALTER TABLE api_keys ADD COLUMN disabled_at BIGINT;
      ALTER TABLE api_keys ADD COLUMN disabled_reason TEXT;
      ALTER TABLE api_keys ADD COLUMN expiry_noted_at BIGINT;
      CREATE INDEX api_keys_expiry ON api_keys (expires_at) WHERE expires_at IS NOT NULL AND deleted_at IS NULL;

      -- Secrets a key was rerolled away from, each good until its grace period ends.
      CREATE TABLE api_key_previous_secrets (
        hash        TEXT PRIMARY KEY,
        key_id      TEXT COLLATE "C" NOT NULL REFERENCES api_keys(id),
        expires_at  BIGINT NOT NULL
      );
      CREATE INDEX api_key_previous_secrets_key ON api_key_previous_secrets (key_id);

      -- Append-only, keyed by an increasing sequence (newest-first reads break ties of at by it).
      CREATE TABLE audit_events (
        seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id            TEXT NOT NULL,
        project_id    TEXT COLLATE "C" NOT NULL,
        at            BIGINT NOT NULL,
        type          TEXT COLLATE "C" NOT NULL,
        actor_key_id  TEXT COLLATE "C",
        key_id        TEXT COLLATE "C",
        end_user      TEXT,
        ip            TEXT,
        request_id    TEXT,
        detail        TEXT NOT NULL DEFAULT '{}'
      );
      CREATE INDEX audit_events_project_time ON audit_events (project_id, at);

      CREATE INDEX usage_requests_key_time ON usage_requests (key_id, started_at);
      CREATE INDEX usage_requests_end_user_time ON usage_requests (project_id, end_user, started_at)
        WHERE end_user IS NOT NULL;
    `,
  },
]
