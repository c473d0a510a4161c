-- parse + quality: the first rule a trace fails, per domain (thresholds from filter.<domain>).
INSERT INTO rejects
SELECT request_id, stage, reason FROM (
{%- for domain, q in quality.items() %}
  {% if not loop.first %}UNION ALL{% endif %}
  SELECT request_id,
         CASE WHEN truncated {% if q.allow_truncated %}AND FALSE{% endif %} THEN 'quality'
              WHEN parse_error IS NOT NULL THEN 'parse'
              ELSE 'quality' END AS stage,
         CASE
           {% if not q.allow_truncated %}WHEN truncated AND parse_error = 'truncated_in_reasoning' THEN 'truncated_in_reasoning'
           WHEN truncated THEN 'truncated'{% endif %}
           WHEN parse_error IS NOT NULL THEN parse_error
           {% if q.require_reasoning %}WHEN coalesce(reasoning_words, 0) < {{ q.min_reasoning_words }} THEN 'missing_reasoning'{% endif %}
           WHEN reasoning_words > {{ q.max_reasoning_words }} THEN 'too_long'
           WHEN repetition > {{ q.max_repetition }} THEN 'repetition'
         END AS reason
  FROM traces WHERE domain = '{{ domain }}'
{%- endfor %}
) WHERE reason IS NOT NULL;
