-- select: up to filter.per_seed traces per seed; verified first, then pseudo-labelled (agreeing with
-- the seed's majority vote), then the rest, each by filter.prefer (shortest reasoning, or most
-- distinct from those already kept: `diverse_rank`, from Python).
CREATE OR REPLACE TEMP TABLE selected AS
WITH alive AS (
  SELECT * FROM traces WHERE request_id NOT IN (SELECT request_id FROM rejects)
), ranked AS (
  SELECT a.request_id, a.seed_id, coalesce(a.verified, FALSE) AS verified, a.pseudo_label, a.vote_share,
         row_number() OVER (
           PARTITION BY a.seed_id
           ORDER BY coalesce(a.verified, FALSE) DESC,
                    a.pseudo_label IS NOT NULL DESC,
                    {% if prefer == "diverse" %}d.rank,{% endif %}
                    a.reasoning_words, a.request_id) AS rk
  FROM alive a
  {% if prefer == "diverse" %}LEFT JOIN diverse_rank d USING (request_id){% endif %}
)
SELECT request_id, seed_id, verified, pseudo_label, vote_share FROM ranked WHERE rk <= {{ per_seed }};

INSERT INTO rejects
SELECT request_id, 'select', 'not_selected' FROM traces
WHERE request_id NOT IN (SELECT request_id FROM rejects)
  AND request_id NOT IN (SELECT request_id FROM selected);
