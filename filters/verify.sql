-- verify: a wrong answer, failed tests, a minority answer against a seed's majority vote, or any answer
-- of a seed whose vote found no consensus (`no_consensus`: most samples are wrong there) is dropped.
-- With filter.require_verified, so is every trace that is not verified: pseudo-labelled (it agrees
-- with the majority, which is not a reference), `no_majority` (too few answers to vote) or `unverified`.
INSERT INTO rejects
SELECT request_id, 'verify',
       CASE WHEN verified IS NOT NULL THEN verify_reason
            WHEN verify_reason = 'majority' THEN 'pseudo_labelled'
            WHEN verify_reason IN ('no_majority', 'no_consensus') THEN verify_reason
            ELSE 'unverified' END
FROM traces
WHERE request_id NOT IN (SELECT request_id FROM rejects)
  AND (verified = FALSE OR verify_reason = 'no_consensus' {% if require_verified %}OR verified IS NULL{% endif %});
