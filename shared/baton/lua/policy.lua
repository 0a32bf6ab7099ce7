-- Write an algorithm's scheduling policy (caps, endpoints, weights, quotas, rate, pause)
-- unless the one in Redis is the same or was built from newer registries: functions
-- refresh their registries at different moments, and an older copy must never undo a
-- newer one.
-- KEYS[1] policy (hash)
-- ARGV[1] digest of the policy's fields
-- ARGV[2] when the algorithm registry this came from was taken (seconds since the epoch)
-- ARGV[3] when the app registry this came from was taken
-- ARGV[4..] field, value pairs
-- Returns 1 if written, 0 if left as it was.
local current = redis.call('HMGET', KEYS[1], 'digest', 'algorithms_taken_at', 'apps_taken_at')
if current[1] == ARGV[1] then
  return 0
end
if current[1] and (tonumber(current[2]) > tonumber(ARGV[2])
    or tonumber(current[3]) > tonumber(ARGV[3])) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'algorithms_taken_at', ARGV[2],
           'apps_taken_at', ARGV[3], unpack(ARGV, 4))
return 1
