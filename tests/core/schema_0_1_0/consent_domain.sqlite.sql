-- The consent domain tables exactly as wattfare_embed 0.1.0 created them on sqlite
-- (its metadata.create_all, captured once; never edit: the upgrade tests start from this).

CREATE TABLE wcd_apps (
	id VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	publishable_key VARCHAR(100) NOT NULL,
	secret_hash VARCHAR(64) NOT NULL,
	signing_key VARCHAR(64) NOT NULL,
	redirect_uris TEXT NOT NULL,
	webhook_url VARCHAR(2048) NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (publishable_key)
);

CREATE TABLE wcd_users (
	id VARCHAR(40) NOT NULL,
	email VARCHAR(320) NOT NULL,
	password_hash VARCHAR(256) NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (email)
);

CREATE TABLE wcd_codes (
	code_hash VARCHAR(64) NOT NULL,
	app_id VARCHAR(64) NOT NULL,
	user_id VARCHAR(255) NOT NULL,
	redirect_uri TEXT NOT NULL,
	code_challenge VARCHAR(128) NOT NULL,
	monthly_cap BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at BIGINT,
	grant_id VARCHAR(40),
	PRIMARY KEY (code_hash)
);

CREATE TABLE wcd_grants (
	id VARCHAR(40) NOT NULL,
	app_id VARCHAR(64) NOT NULL,
	user_id VARCHAR(255) NOT NULL,
	status VARCHAR(12) NOT NULL,
	monthly_cap BIGINT NOT NULL,
	key_hash VARCHAR(128),
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	revoked_at BIGINT,
	revoked_reason VARCHAR(20),
	PRIMARY KEY (id)
);

CREATE INDEX wcd_grants_user ON wcd_grants (user_id, status);

CREATE INDEX wcd_grants_app_user ON wcd_grants (app_id, user_id, status);

CREATE TABLE wcd_outbox (
	id INTEGER NOT NULL,
	kind VARCHAR(20) NOT NULL,
	app_id VARCHAR(64) NOT NULL,
	ordering_key VARCHAR(140) NOT NULL,
	payload TEXT NOT NULL,
	state VARCHAR(10) NOT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_ms BIGINT NOT NULL,
	locked_until_ms BIGINT,
	last_error TEXT,
	created_at BIGINT NOT NULL,
	finished_at BIGINT,
	PRIMARY KEY (id)
);

CREATE INDEX wcd_outbox_order ON wcd_outbox (ordering_key, state);

CREATE INDEX wcd_outbox_due ON wcd_outbox (state, next_attempt_ms);

CREATE TABLE wcd_settings (
	name VARCHAR(64) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (name)
);
