-- Each user of the tenant with the rank of their overall status as of an instant: the
-- rules of `tracks::status` in SQL, over `a` (assignment), `t` (track) and `c.done` (the
-- newest completion). 1 not compliant, 2 expiring soon, 3 uncompleted, 4 completed; the
-- lowest rank of a user's tracks is theirs, NULL when they have none.
--
-- Parameters, in order: the instant three times (the rank), the assignments' instant, the
-- completions' tenant and instant, the users' tenant.
SELECT u.id AS user_id,
       CAST(MIN(CASE
           WHEN a.track_id IS NULL THEN NULL
           WHEN c.done IS NOT NULL AND t.validity_days IS NOT NULL
                AND ? >= c.done + CAST(t.validity_days AS BIGINT) * 86400000 THEN 1
           WHEN c.done IS NOT NULL AND t.validity_days IS NOT NULL
                AND ? >= c.done
                       + CAST(t.validity_days - t.expiring_soon_days AS BIGINT) * 86400000
                THEN 2
           WHEN c.done IS NOT NULL THEN 4
           WHEN t.due_days IS NOT NULL
                AND ? >= a.assigned_at_ms + CAST(t.due_days AS BIGINT) * 86400000 THEN 1
           ELSE 3 END) AS BIGINT) AS status_rank
FROM users u
LEFT JOIN track_assignments a ON a.user_id = u.id AND a.assigned_at_ms <= ?
LEFT JOIN learning_tracks t ON t.id = a.track_id
LEFT JOIN (SELECT user_id, track_id, MAX(completed_at_ms) AS done
           FROM track_completions
           WHERE tenant = ? AND completed_at_ms <= ?
           GROUP BY user_id, track_id) c
  ON c.user_id = a.user_id AND c.track_id = a.track_id
WHERE u.tenant = ?
GROUP BY u.id
