-- verify: a wrong answer, failed tests or a minority answer against a seed's majority vote is
-- dropped. With filter.require_verified, so is every trace that is not verified: pseudo-labelled
-- (it agrees with the majority, which is not a reference), `no_majority` (no label) or `unverified`.
INSERT INTO rejects
SELECT request_id, 'verify',
       CASE WHEN verified IS NOT NULL THEN verify_reason
            WHEN verify_reason = 'majority' THEN 'pseudo_labelled'
            WHEN verify_reason = 'no_majority' THEN 'no_majority'
            ELSE 'unverified' END
FROM traces
WHERE request_id NOT IN (SELECT request_id FROM rejects)
  AND (verified = FALSE {% if require_verified %}OR verified IS NULL{% endif %});
