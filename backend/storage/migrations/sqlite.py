"""SQLite schema, as numbered migrations: entry i moves the schema from version i to i+1 (PRAGMA user_version).
Append; never edit a shipped one."""

MIGRATIONS: list[str] = [
    # 1: analysis cache, API keys, usage, stats
    """
    CREATE TABLE analyses (
        id INTEGER PRIMARY KEY,
        cache_key TEXT NOT NULL UNIQUE,          -- 'url:<normalized url>' or 'sha256:<hex of the audio bytes>'
        source_kind TEXT NOT NULL CHECK (source_kind IN ('url', 'upload')),
        preview_url TEXT NOT NULL,               -- the URL, or 'upload:sha256:<hex>' for uploads
        content_sha256 TEXT,
        title TEXT NOT NULL,
        artist TEXT NOT NULL,
        bpm REAL,
        bpm_confidence REAL NOT NULL,
        key TEXT,
        key_confidence REAL NOT NULL,
        energy REAL NOT NULL,
        danceability REAL NOT NULL,
        acousticness REAL NOT NULL,
        spectral_centroid REAL NOT NULL,
        analysis_duration REAL NOT NULL,
        analyzed_at TEXT NOT NULL,
        result_json TEXT NOT NULL,               -- every field of the analysis, for the full response
        user_verified INTEGER NOT NULL DEFAULT 0,
        manual_bpm REAL,
        manual_key TEXT,
        bpm_notes TEXT,
        verified_at TEXT
    );
    CREATE INDEX analyses_content_sha256 ON analyses (content_sha256);
    CREATE INDEX analyses_analyzed_at ON analyses (analyzed_at);

    -- Substring search over title and artist: a trigram index answers LIKE '%q%' case-insensitively.
    CREATE VIRTUAL TABLE analyses_search USING fts5 (
        title, artist, content='analyses', content_rowid='id', tokenize='trigram'
    );
    CREATE TRIGGER analyses_search_insert AFTER INSERT ON analyses BEGIN
        INSERT INTO analyses_search (rowid, title, artist) VALUES (new.id, new.title, new.artist);
    END;
    CREATE TRIGGER analyses_search_delete AFTER DELETE ON analyses BEGIN
        INSERT INTO analyses_search (analyses_search, rowid, title, artist)
        VALUES ('delete', old.id, old.title, old.artist);
    END;
    CREATE TRIGGER analyses_search_update AFTER UPDATE OF title, artist ON analyses BEGIN
        INSERT INTO analyses_search (analyses_search, rowid, title, artist)
        VALUES ('delete', old.id, old.title, old.artist);
        INSERT INTO analyses_search (rowid, title, artist) VALUES (new.id, new.title, new.artist);
    END;

    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT,
        key_hash TEXT NOT NULL UNIQUE,           -- SHA-256 of the key: keys are random, so a fast hash is right
        key_prefix TEXT NOT NULL,                -- shown in listings and logs, never enough to use
        is_admin INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        daily_limit INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );

    CREATE TABLE api_usage (
        id INTEGER PRIMARY KEY,
        key_id INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL,
        status INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX api_usage_key_time ON api_usage (key_id, created_at);

    -- The quota counter: one row per key and UTC day, so the check costs the same however long the history.
    CREATE TABLE daily_usage (
        key_id INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
        day TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key_id, day)
    ) WITHOUT ROWID;

    CREATE TABLE stats (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO stats (name, value) VALUES ('cache_hits', 0), ('cache_misses', 0);
    CREATE TABLE stats_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_updated TEXT NOT NULL
    );
    INSERT INTO stats_meta (id, last_updated) VALUES (1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
    """,
    # 2: the chart arrays (?detail=1) move out of result_json, so a cache hit parses only the small summary
    """
    ALTER TABLE analyses ADD COLUMN detail_json TEXT;
    """,
    # 3: costs that stay flat as the catalog grows: an index per sort order (the listing walks it and skips
    # index entries, not rows), lookups by preview_url, and the song count kept exact by triggers in the same
    # transaction as every insert and delete, instead of a COUNT(*) over the whole table per /stats.
    """
    CREATE INDEX analyses_title_order ON analyses (title COLLATE NOCASE, id DESC);
    CREATE INDEX analyses_artist_order ON analyses (artist COLLATE NOCASE, id DESC);
    CREATE INDEX analyses_bpm_order ON analyses (COALESCE(manual_bpm, bpm), id DESC);
    CREATE INDEX analyses_key_order ON analyses (COALESCE(manual_key, key), id DESC);
    CREATE INDEX analyses_preview_url ON analyses (preview_url);
    INSERT INTO stats (name, value) SELECT 'cached_songs', COUNT(*) FROM analyses;
    CREATE TRIGGER analyses_count_insert AFTER INSERT ON analyses BEGIN
        UPDATE stats SET value = value + 1 WHERE name = 'cached_songs';
    END;
    CREATE TRIGGER analyses_count_delete AFTER DELETE ON analyses BEGIN
        UPDATE stats SET value = value - 1 WHERE name = 'cached_songs';
    END;
    """,
    # 4: a cache hit's answer, serialized once (backend/web/prebuilt.py). Any other change to the row (metadata
    # filled in, a verification, a re-analysis) clears it, so it is never older than the row; NULL means "build
    # it from the row" (rows stored before this migration, or changed since).
    """
    ALTER TABLE analyses ADD COLUMN response_json TEXT;
    CREATE TRIGGER analyses_response_stale AFTER UPDATE ON analyses
    WHEN new.response_json IS NOT NULL AND new.response_json IS old.response_json BEGIN
        UPDATE analyses SET response_json = NULL WHERE id = new.id;
    END;
    """,
    # 5: searches of one or two characters off an index. The trigram index cannot answer them, and a rare pair
    # (or a single CJK character) made the search read the whole table. Every distinct 1- and 2-character
    # substring of the case-folded title and artist (essentia_short_grams, registered on every connection by
    # backend/storage/sqlite.py) is a token of a contentless FTS5 document per song, written as the hex of its
    # UTF-8 bytes so no tokenizer splits or folds it again. FTS5 keeps each token's rowids delta-compressed
    # (detail='none': no positions), a few bytes per song and gram, and yields them in rowid order, so a page
    # newest first stops after the page like the trigram search does. Triggers keep it in the same transaction.
    """
    CREATE VIRTUAL TABLE analyses_short USING fts5 (grams, content='', tokenize='ascii', detail='none');
    INSERT INTO analyses_short (rowid, grams) SELECT id, essentia_short_grams(title, artist) FROM analyses;
    CREATE TRIGGER analyses_short_insert AFTER INSERT ON analyses BEGIN
        INSERT INTO analyses_short (rowid, grams) VALUES (new.id, essentia_short_grams(new.title, new.artist));
    END;
    CREATE TRIGGER analyses_short_delete AFTER DELETE ON analyses BEGIN
        INSERT INTO analyses_short (analyses_short, rowid, grams)
        VALUES ('delete', old.id, essentia_short_grams(old.title, old.artist));
    END;
    CREATE TRIGGER analyses_short_update AFTER UPDATE OF title, artist ON analyses BEGIN
        INSERT INTO analyses_short (analyses_short, rowid, grams)
        VALUES ('delete', old.id, essentia_short_grams(old.title, old.artist));
        INSERT INTO analyses_short (rowid, grams) VALUES (new.id, essentia_short_grams(new.title, new.artist));
    END;
    """,
]
