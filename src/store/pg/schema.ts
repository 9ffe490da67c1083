// The PostgreSQL schema, created and migrated by kmgrd itself. Each migration
// runs in one transaction with the version bump, under an advisory lock, so
// two nodes starting together cannot both apply it, and a crash mid-migration
// leaves the previous version whole. A database whose version is newer than
// this kmgrd knows is refused: an older binary would not keep rules it has
// never heard of (for example a new limit), and counting wrongly is worse
// than not serving.
import type { PoolClient } from 'pg';
import { ConfigError } from '../../protocol/errors.js';

/** Append only: a released migration is never edited, a change is a new entry. */
export const MIGRATIONS: ReadonlyArray<{ version: number; why: string; sql: string[] }> = [
  {
    version: 1,
    why: 'persons, keys, history, nonces, notices, partners, deliveries, devices',
    sql: [
      `CREATE TABLE kmgr_meta (name text COLLATE "C" PRIMARY KEY, value text COLLATE "C" NOT NULL)`,
      // key_id is the person's current management key; mgmt_keys maps every key ID the person
      // ever had to them, so a key replaced by a rekey is told "replaced", not "unknown".
      `CREATE TABLE persons (
         person_id text COLLATE "C" PRIMARY KEY,
         key_id text COLLATE "C" NOT NULL,
         rec jsonb NOT NULL)`,
      `CREATE TABLE mgmt_keys (key_id text COLLATE "C" PRIMARY KEY, person_id text COLLATE "C" NOT NULL)`,
      // Text columns sort bytewise (COLLATE "C"), as LevelDB's keys do, whatever the
      // database's locale: listings come out in the same order on both backends.
      // The record's terms and binding are rec; what every use changes has its own columns,
      // so a fetch rewrites a few numbers, not the binding statement.
      `CREATE TABLE keys (
         person_id text COLLATE "C" NOT NULL,
         partner_id text COLLATE "C" NOT NULL,
         rec jsonb NOT NULL,
         uses jsonb NOT NULL,
         last_used_at bigint,
         history_seq bigint NOT NULL,
         blob bytea NOT NULL,
         verify_minute bigint NOT NULL DEFAULT 0,
         verify_count integer NOT NULL DEFAULT 0,
         -- The earliest instant check-terms must look at (expiry, certificate renewal point;
         -- NULL for none or a retired key): a run reads only the keys due, not every key.
         term_at bigint,
         PRIMARY KEY (person_id, partner_id))`,
      `CREATE INDEX keys_term_at ON keys (term_at) WHERE term_at IS NOT NULL`,
      `CREATE TABLE history (
         person_id text COLLATE "C" NOT NULL,
         partner_id text COLLATE "C" NOT NULL,
         seq bigint NOT NULL,
         at bigint NOT NULL,
         rec jsonb NOT NULL,
         PRIMARY KEY (person_id, partner_id, seq))`,
      // The primary key is what refuses a replay on every node (threat 8).
      `CREATE TABLE nonces (
         key_id text COLLATE "C" NOT NULL,
         nonce text COLLATE "C" NOT NULL,
         expires_at bigint NOT NULL,
         PRIMARY KEY (key_id, nonce))`,
      `CREATE INDEX nonces_expiry ON nonces (expires_at)`,
      // The latest expiry of any nonce ever pruned: a request whose window ends at or before it
      // is refused as stale, since its nonce may be among those forgotten (a clock stepped
      // forward, pruned, and stepped back must not make a captured request new again).
      `CREATE TABLE nonce_horizon (one boolean PRIMARY KEY DEFAULT true CHECK (one), until bigint NOT NULL)`,
      `INSERT INTO nonce_horizon (until) VALUES (0)`,
      `CREATE TABLE notices (
         person_id text COLLATE "C" NOT NULL,
         id text COLLATE "C" NOT NULL,
         rec jsonb NOT NULL,
         read boolean NOT NULL DEFAULT false,
         PRIMARY KEY (person_id, id))`,
      // One row per fact: the same expiry or limit is recorded once, whichever node sees it first.
      `CREATE TABLE notice_dedupe (
         person_id text COLLATE "C" NOT NULL,
         partner_id text COLLATE "C" NOT NULL,
         dedupe text COLLATE "C" NOT NULL,
         notice_id text COLLATE "C" NOT NULL,
         PRIMARY KEY (person_id, partner_id, dedupe))`,
      `CREATE TABLE partners (partner_id text COLLATE "C" PRIMARY KEY, rec jsonb NOT NULL)`,
      `CREATE TABLE shared_names (name text COLLATE "C" PRIMARY KEY, partner_id text COLLATE "C" NOT NULL)`,
      `CREATE TABLE person_partners (
         person_id text COLLATE "C" NOT NULL,
         name text COLLATE "C" NOT NULL,
         partner_id text COLLATE "C" NOT NULL,
         PRIMARY KEY (person_id, name))`,
      `CREATE TABLE notify (person_id text COLLATE "C" PRIMARY KEY, settings jsonb NOT NULL)`,
      // lease_until: a node delivering a notice holds it this long, so two nodes never send it together.
      `CREATE TABLE pending (
         key text COLLATE "C" PRIMARY KEY,
         person_id text COLLATE "C" NOT NULL,
         due_at bigint NOT NULL,
         lease_until bigint NOT NULL DEFAULT 0,
         rec jsonb NOT NULL)`,
      `CREATE INDEX pending_due ON pending (due_at)`,
      `CREATE TABLE delivery_log (
         person_id text COLLATE "C" NOT NULL,
         at bigint NOT NULL,
         id bigserial NOT NULL,
         entry jsonb NOT NULL,
         PRIMARY KEY (person_id, at, id))`,
      `CREATE TABLE devices (
         person_id text COLLATE "C" NOT NULL,
         label text COLLATE "C" NOT NULL,
         added_at bigint NOT NULL,
         last_used_at bigint,
         last_key_id text COLLATE "C",
         via text NOT NULL,
         revoked_at bigint,
         PRIMARY KEY (person_id, label))`,
      `CREATE TABLE device_exports (
         person_id text COLLATE "C" NOT NULL,
         export_id text COLLATE "C" NOT NULL,
         expires_at bigint NOT NULL,
         used_at bigint,
         PRIMARY KEY (person_id, export_id))`,
      // Each restore this database went through (kmgrd restore), carried from backup to backup.
      `CREATE TABLE restores (restored_at text COLLATE "C" PRIMARY KEY, rec jsonb NOT NULL)`,
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Any constant: kmgrd's nodes agree on it, nothing else on the server uses it. */
const MIGRATION_LOCK = 0x6b6d6772; // "kmgr"

/** Brings the schema to SCHEMA_VERSION; returns the version found before. */
export async function migrate(c: PoolClient): Promise<number> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS kmgr_schema (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const r = await c.query<{ v: number | null }>('SELECT max(version) AS v FROM kmgr_schema');
    const found = r.rows[0]?.v ?? 0;
    if (found > SCHEMA_VERSION) {
      throw new ConfigError(
        `the database has kmgr schema version ${found}, newer than this kmgrd knows (${SCHEMA_VERSION}); upgrade kmgrd on this node before it serves`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= found) continue;
      for (const sql of m.sql) await c.query(sql);
      await c.query('INSERT INTO kmgr_schema (version) VALUES ($1)', [m.version]);
    }
    await c.query('COMMIT');
    return found;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
