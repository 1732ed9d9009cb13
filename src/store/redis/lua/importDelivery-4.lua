--[[
importDelivery: write one delivery of layout 1 in layout 2 (npm run migrate),
replacing whatever an interrupted earlier run left, atomically. Idempotent.

KEYS[1] l:{p}:<id>   KEYS[2] q:{p}:<id>   KEYS[3] i:{p}:<status>   KEYS[4] x:{p}

ARGV[1] index member, ARGV[2] expiry member or "", ARGV[3] due ms or ""
ARGV[4] number of events n, then n StoredEvent byte strings,
then pairs of request field, "<version>:<fingerprint>"

Reply: the number of events written
]]
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[4])
for i = 1, n do
  redis.call('RPUSH', KEYS[1], ARGV[4 + i])
end
for i = 5 + n, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[3], 0, ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
end
return n
