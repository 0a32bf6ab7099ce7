-- Confirm, once the attempt is committed to the database and before its request is
-- sent, that the attempt holds a slot, and set the slot's score to the attempt deadline.
-- If Redis lost its data between admission and commit and was rebuilt without this
-- attempt, take a slot again if one is free.
-- KEYS[1] running set   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[2] epoch marker
-- ARGV[1] running member
-- ARGV[2] deadline score
-- ARGV[3] max_concurrency of the algorithm
-- Returns 'ok', 'full' (no slot: do not send) or 'lost' (no state: reconcile first).
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 'lost'
end
local running = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  -- Reconcile restores every active attempt, including one like this whose admission
  -- was lost: if that put the set over the cap, this unsent attempt is the one to go.
  if running > tonumber(ARGV[3]) then
    redis.call('ZREM', KEYS[1], ARGV[1])
    return 'full'
  end
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
  return 'ok'
end
if running < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 'ok'
end
return 'full'
