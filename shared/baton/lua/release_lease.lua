-- Take back an admission whose lease ran out, unless its worker confirmed it meanwhile.
-- Confirmation (and a heartbeat) moves the slot's score to the attempt's deadline, so a
-- score still equal to the expired lease the caller saw means nobody claimed the slot.
-- KEYS[1] running set   (zset: score deadline or lease, member "<task_id>:<attempt>")
-- ARGV[1] running member
-- ARGV[2] the score the caller saw (the expired lease)
-- Returns 1 if the slot was released, 0 if it is gone or was claimed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
