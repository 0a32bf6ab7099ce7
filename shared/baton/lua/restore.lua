-- Restore an algorithm's state from what the database says (reconcile). Only adds:
-- a member the database no longer holds active is removed by the caller, one by one,
-- after the database confirms it finished. When the epoch marker is missing (Redis
-- lost its data) it is set here, after the state is back, so admission resumes.
-- KEYS[1] ready queue   (zset: score -priority, member "<created_ms>:<task_id>:<attempt>")
-- KEYS[2] running set   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[3] epoch marker
-- KEYS[4] (optional) snapshot mark, set by the caller before it read the database. A
--         flush between that read and this script deletes it with everything else:
--         the read may then miss attempts sent just before the flush, so it must not
--         rebuild the state (the caller reads the database again).
-- ARGV[1] new epoch token
-- ARGV[2] number N of running pairs that follow
-- ARGV[3 .. 2+2N] running pairs: deadline score, running member
-- ARGV[3+2N ..] ready triplets: score, ready member, running member
-- Returns {1 if the epoch was missing else 0, running members added, ready entries added},
-- or {-1, 0, 0} when the snapshot is older than a flush (nothing changed).
local rebuilt = 0
if redis.call('EXISTS', KEYS[3]) == 0 then
  if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 0 then
    return {-1, 0, 0}
  end
  rebuilt = 1
end
if KEYS[4] then
  redis.call('DEL', KEYS[4])
end
local running_added = 0
local last = 2 + 2 * tonumber(ARGV[2])
for i = 3, last, 2 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i + 1]) then
    running_added = running_added + redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local ready_added = 0
for i = last + 1, #ARGV, 3 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i + 2]) then
    ready_added = ready_added + redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1])
  end
end
if rebuilt == 1 then
  redis.call('SET', KEYS[3], ARGV[1])
end
return {rebuilt, running_added, ready_added}
