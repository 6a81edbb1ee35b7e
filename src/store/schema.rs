//! The schema, one list of migrations per backend, applied in order at start-up and recorded in
//! `schema_version`. The two lists describe the same tables; only types and key generation differ.
//!
//! Version 2 adds `items` (one row per item: status and the running legal limit, for `/metrics`
//! without reading every case), dead-letter replays, and audit anchors (where retention pruned a
//! chain, the hash the remaining records continue from). Version 5 indexes timers by clock, then
//! due time, the way the scheduler looks them up.

/// Version 5, the same on both backends. Due timers are looked up per clock (the earliest
/// unleased one to sleep until, the due ones to claim): by clock, then due time, instead of due
/// time alone, which made each lookup walk past every timer of the other clock.
const V5: &[&str] = &[
    "CREATE INDEX timers_clock_due ON timers (clock, due_at)",
    "DROP INDEX timers_due",
];

/// (version, statements) for SQLite.
pub const SQLITE: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE cases (
            case_id TEXT PRIMARY KEY,
            onething TEXT NOT NULL,
            submission TEXT NOT NULL,
            state TEXT NOT NULL,
            version INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0
        )",
            "CREATE TABLE outbox (
            event_id TEXT PRIMARY KEY,
            case_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            routing_key TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            published_at INTEGER,
            UNIQUE (case_id, seq)
        )",
            "CREATE INDEX outbox_pending ON outbox (published_at, created_at, case_id, seq)",
            "CREATE TABLE timers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            case_id TEXT NOT NULL,
            item TEXT NOT NULL,
            kind TEXT NOT NULL,
            department TEXT NOT NULL,
            clock TEXT NOT NULL,
            due_at INTEGER NOT NULL,
            payload TEXT NOT NULL,
            lease_owner TEXT,
            lease_until INTEGER,
            UNIQUE (case_id, item, kind)
        )",
            "CREATE INDEX timers_due ON timers (due_at)",
            "CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            case_id TEXT,
            item TEXT,
            department TEXT,
            at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            summary TEXT NOT NULL,
            body_sha256 TEXT,
            prev_hash TEXT,
            hash TEXT
        )",
            "CREATE INDEX audit_case ON audit (case_id, id)",
            "CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            reason TEXT NOT NULL,
            errors TEXT NOT NULL,
            case_id TEXT,
            body TEXT NOT NULL
        )",
        ],
    ),
    (
        2,
        &[
            "CREATE TABLE items (
                case_id TEXT NOT NULL,
                item TEXT NOT NULL,
                department TEXT NOT NULL,
                status TEXT NOT NULL,
                limit_due INTEGER,
                PRIMARY KEY (case_id, item)
            )",
            "CREATE INDEX items_status ON items (status)",
            "CREATE INDEX items_limit ON items (limit_due)",
            "ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER",
            "ALTER TABLE dead_letters ADD COLUMN routing_key TEXT",
            "ALTER TABLE dead_letters ADD COLUMN body_base64 INTEGER NOT NULL DEFAULT 0",
            "CREATE TABLE audit_anchors (
                chain TEXT PRIMARY KEY,
                hash TEXT NOT NULL,
                pruned_at INTEGER NOT NULL
            )",
        ],
    ),
    (
        3,
        &[
            // Several instances: an event is relayed by whoever holds its case's first unpublished
            // event (a lease), so each case's events leave in `seq` order.
            "ALTER TABLE outbox ADD COLUMN lease_owner TEXT",
            "ALTER TABLE outbox ADD COLUMN lease_until INTEGER",
            "CREATE INDEX outbox_case_pending ON outbox (case_id, seq) WHERE published_at IS NULL",
        ],
    ),
    (
        4,
        &[
            // Department limits shared by instances: `concurrency` permits per department, each
            // held by one request at a time (leased, so a dead instance's permit frees itself),
            // and the next start a department's rate allows, per class of request.
            "CREATE TABLE permits (
                department TEXT NOT NULL,
                slot INTEGER NOT NULL,
                holder TEXT,
                until INTEGER,
                PRIMARY KEY (department, slot)
            )",
            "CREATE TABLE pacing (
                department TEXT NOT NULL,
                class TEXT NOT NULL,
                next_at INTEGER NOT NULL,
                PRIMARY KEY (department, class)
            )",
        ],
    ),
    (5, V5),
];

/// (version, statements) for PostgreSQL.
pub const POSTGRES: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE cases (
            case_id TEXT PRIMARY KEY,
            onething TEXT NOT NULL,
            submission TEXT NOT NULL,
            state TEXT NOT NULL,
            version BIGINT NOT NULL,
            received_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0
        )",
            "CREATE TABLE outbox (
            event_id TEXT PRIMARY KEY,
            case_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            routing_key TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            published_at BIGINT,
            UNIQUE (case_id, seq)
        )",
            "CREATE INDEX outbox_pending ON outbox (published_at, created_at, case_id, seq)",
            "CREATE TABLE timers (
            id BIGSERIAL PRIMARY KEY,
            case_id TEXT NOT NULL,
            item TEXT NOT NULL,
            kind TEXT NOT NULL,
            department TEXT NOT NULL,
            clock TEXT NOT NULL,
            due_at BIGINT NOT NULL,
            payload TEXT NOT NULL,
            lease_owner TEXT,
            lease_until BIGINT,
            UNIQUE (case_id, item, kind)
        )",
            "CREATE INDEX timers_due ON timers (due_at)",
            "CREATE TABLE audit (
            id BIGSERIAL PRIMARY KEY,
            case_id TEXT,
            item TEXT,
            department TEXT,
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            summary TEXT NOT NULL,
            body_sha256 TEXT,
            prev_hash TEXT,
            hash TEXT
        )",
            "CREATE INDEX audit_case ON audit (case_id, id)",
            "CREATE TABLE dead_letters (
            id BIGSERIAL PRIMARY KEY,
            at BIGINT NOT NULL,
            reason TEXT NOT NULL,
            errors TEXT NOT NULL,
            case_id TEXT,
            body TEXT NOT NULL
        )",
        ],
    ),
    (
        2,
        &[
            "CREATE TABLE items (
                case_id TEXT NOT NULL,
                item TEXT NOT NULL,
                department TEXT NOT NULL,
                status TEXT NOT NULL,
                limit_due BIGINT,
                PRIMARY KEY (case_id, item)
            )",
            "CREATE INDEX items_status ON items (status)",
            "CREATE INDEX items_limit ON items (limit_due)",
            "ALTER TABLE dead_letters ADD COLUMN replayed_at BIGINT",
            "ALTER TABLE dead_letters ADD COLUMN routing_key TEXT",
            "ALTER TABLE dead_letters ADD COLUMN body_base64 INTEGER NOT NULL DEFAULT 0",
            "CREATE TABLE audit_anchors (
                chain TEXT PRIMARY KEY,
                hash TEXT NOT NULL,
                pruned_at BIGINT NOT NULL
            )",
        ],
    ),
    (
        3,
        &[
            // Several instances: an event is relayed by whoever holds its case's first unpublished
            // event (a lease), so each case's events leave in `seq` order.
            "ALTER TABLE outbox ADD COLUMN lease_owner TEXT",
            "ALTER TABLE outbox ADD COLUMN lease_until BIGINT",
            "CREATE INDEX outbox_case_pending ON outbox (case_id, seq) WHERE published_at IS NULL",
        ],
    ),
    (
        4,
        &[
            // Department limits shared by instances: `concurrency` permits per department, each
            // held by one request at a time (leased, so a dead instance's permit frees itself),
            // and the next start a department's rate allows, per class of request.
            "CREATE TABLE permits (
                department TEXT NOT NULL,
                slot INTEGER NOT NULL,
                holder TEXT,
                until BIGINT,
                PRIMARY KEY (department, slot)
            )",
            "CREATE TABLE pacing (
                department TEXT NOT NULL,
                class TEXT NOT NULL,
                next_at BIGINT NOT NULL,
                PRIMARY KEY (department, class)
            )",
        ],
    ),
    (5, V5),
];
