--[[
deleteDelivery: remove a finished delivery whose retention is over, with its
index entries, atomically (RETAIN_FINISHED_FOR). Its feed entries age out
with the feed.

KEYS[1] l:{p}:<id>   KEYS[2] q:{p}:<id>   KEYS[3] i:{p}:<status>   KEYS[4] x:{p}

ARGV[1] expiry member "<status><index member>"
ARGV[2] index member
ARGV[3] now, ms: nothing happens unless the member is due by then

Replies: 1 deleted, 0 not due (or already gone)
]]
local due = redis.call('ZSCORE', KEYS[4], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[3]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
