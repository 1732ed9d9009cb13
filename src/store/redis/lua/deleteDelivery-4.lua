--[[
deleteDelivery: remove a finished delivery whose retention is over, with its
index entries, atomically (RETAIN_FINISHED_FOR). Its feed entries age out
with the feed.

KEYS[1] l:{p}:<id>   KEYS[2] q:{p}:<id>   KEYS[3] i:{p}:<status>   KEYS[4] x:{p}

ARGV[1] expiry member "<status><index member>"
ARGV[2] index member
ARGV[3] now, ms: nothing happens unless the member is due by then
ARGV[4] due time the caller read from the delivery's last event, or "" (then only the
        expiry entry counts: a delivery finished before retention was turned on has none)
ARGV[5] the delivery's version when the caller read it (with ARGV[4]), or ""

Replies: 1 deleted, 0 not due (or already gone, or changed since it was read)
]]
local due = redis.call('ZSCORE', KEYS[4], ARGV[1])
if not due and ARGV[4] ~= '' and tostring(redis.call('LLEN', KEYS[1])) == ARGV[5] then
  due = ARGV[4]
end
if not due or tonumber(due) > tonumber(ARGV[3]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
