-- verify: a wrong answer or failed tests is dropped; an unverifiable trace (no reference, no
-- majority) is dropped only when filter.require_verified is set.
INSERT INTO rejects
SELECT request_id, 'verify', CASE WHEN verified IS NULL THEN 'unverified' ELSE verify_reason END
FROM traces
WHERE request_id NOT IN (SELECT request_id FROM rejects)
  AND (verified = FALSE {% if require_verified %}OR verified IS NULL{% endif %});
