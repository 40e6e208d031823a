-- Dead letters and refused reports re-driven by `helpline dlq replay`: which one, to which
-- topic, who replayed it and when. A letter is replayed once: the first (unforced) replay
-- claims its row before publishing and a second is refused; `--force` adds a row of its
-- own. A claim without `published_at` is a replay that did not finish (it is taken over
-- after a minute). No message content is kept here.
CREATE SCHEMA IF NOT EXISTS operations;

CREATE TABLE operations.dlq_replays (
    replay_id     bigserial PRIMARY KEY,
    dlq_id        text NOT NULL,
    dlq_topic     text NOT NULL,
    dlq_partition integer NOT NULL,
    dlq_offset    bigint NOT NULL,
    target_topic  text NOT NULL,
    replayed_by   text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    forced        boolean NOT NULL DEFAULT false
);

CREATE UNIQUE INDEX dlq_replays_once ON operations.dlq_replays (dlq_id) WHERE NOT forced;
