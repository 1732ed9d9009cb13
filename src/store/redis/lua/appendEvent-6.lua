--[[
appendEvent: append one event to a delivery's log, atomically (layout 2).

Guards storage invariants only (business rules live in TypeScript): the
expected version, request idempotency, gap-free numbering. Then the writes,
the feed entry (trimmed by age), the index move and the publications, all or
nothing. Every key shares the partition's hash tag (one cluster slot).

KEYS[1] l:{p}:<id>        List: StoredEvent bytes; version = position + 1
KEYS[2] q:{p}:<id>        Hash: request field -> "<version>:<fingerprint>"
KEYS[3] f:{p}             Stream: the partition's change feed
KEYS[4] i:{p}:<before>    ZSet: index of the status before (KEYS[5] again for a creation)
KEYS[5] i:{p}:<after>     ZSet: index of the status after
KEYS[6] x:{p}             ZSet: finished deliveries to delete, by due time

ARGV[1]  expected version (the stored version this command was decided on)
ARGV[2]  request field ("r<request_id>" or "a<private key>")
ARGV[3]  fingerprint of the command
ARGV[4]  the event (StoredEvent bytes)
ARGV[5]  the delivery id
ARGV[6]  index member "<created_at ms, 13 digits><id>"
ARGV[7]  status before, as its number (0: none)
ARGV[8]  status after
ARGV[9]  event type code
ARGV[10] now, ms (the feed entry's time; never below the feed's last entry)
ARGV[11] feed retention, ms: entries older than now - this are trimmed
ARGV[12] due time of deletion, ms, or "" (kept forever / not finished)
ARGV[13] the delivery's channel, ARGV[14] its payload (WatchDeliveryResponse bytes)
ARGV[15] the partition's channel: "<entry before> <entry> <id> <version> <statuses> <payload>"

Replies:
  {"appended", version, feed entry id, the feed entry before it}
  {"conflict", currentVersion}          stored version differs from ARGV[1]
  {"duplicate", "<version>:<fp>"}       request field already recorded: nothing written
]]
local prior = redis.call('HGET', KEYS[2], ARGV[2])
if prior then
  return {'duplicate', prior}
end

local current = redis.call('LLEN', KEYS[1])
if tostring(current) ~= ARGV[1] then
  return {'conflict', tostring(current)}
end
local version = tostring(current + 1)

redis.call('RPUSH', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], version .. ':' .. ARGV[3])

if ARGV[7] ~= ARGV[8] then
  if ARGV[7] ~= '0' then
    redis.call('ZREM', KEYS[4], ARGV[6])
  end
  redis.call('ZADD', KEYS[5], 0, ARGV[6])
end
if ARGV[12] ~= '' then
  redis.call('ZADD', KEYS[6], ARGV[12], ARGV[8] .. ARGV[6])
end

-- Feed ids are times; a replica whose clock is behind the last entry's uses the last entry's time.
local ms = ARGV[10]
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
local previousId = '0-0'
if last then
  previousId = last[1]
  local lastMs = string.match(last[1], '^(%d+)-')
  if string.len(lastMs) > string.len(ms) or (string.len(lastMs) == string.len(ms) and lastMs > ms) then
    ms = lastMs
  end
end
local minId = tostring(math.max(0, tonumber(ARGV[10]) - tonumber(ARGV[11])))
local feedId = redis.call('XADD', KEYS[3], 'MINID', minId, ms .. '-*',
  'd', ARGV[5], 'v', version, 's', ARGV[7] .. ARGV[8], 't', ARGV[9])

redis.call('SPUBLISH', ARGV[13], ARGV[14])
-- The partition's message: the entry before, the entry, then the update itself (see codec.ts).
redis.call('SPUBLISH', ARGV[15], previousId .. ' ' .. feedId .. ' ' .. ARGV[5] .. ' ' .. version .. ' ' .. ARGV[7] .. ARGV[8] .. ' ' .. ARGV[14])
return {'appended', version, feedId, previousId}
