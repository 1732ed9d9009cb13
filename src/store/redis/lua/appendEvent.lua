--[[
appendEvent: append one event to a delivery's log, atomically.

Guards storage invariants only (business rules live in TypeScript): the
expected version, request idempotency, gap-free numbering. Then the writes and
the publication, all or nothing.

KEYS[1] delivery:{id}:events    Stream, entry ID <version>-0, fields event, delivery
KEYS[2] delivery:{id}:state     Hash: version, delivery (JSON of the current state)
KEYS[3] delivery:{id}:requests  Hash: request key -> "<version>:<fingerprint>"
KEYS[4] deliveries              Stream: one entry (field id) per created delivery

ARGV[1] JSON {
  "id": delivery id,
  "expectedVersion": "N" (string: the stored version this command was decided on),
  "version": "N+1",
  "requestKey": string, "fingerprint": string,
  "event": canonical JSON of the DeliveryEvent,
  "delivery": canonical JSON of the Delivery after it,
  "channel": Pub/Sub channel of the delivery
}

Replies:
  {"appended", version}
  {"conflict", currentVersion}       stored version differs from expectedVersion
  {"duplicate", "<version>:<fp>"}    requestKey already recorded: nothing written
]]
local args = cjson.decode(ARGV[1])

local prior = redis.call('HGET', KEYS[3], args.requestKey)
if prior then
  return {'duplicate', prior}
end

local current = redis.call('HGET', KEYS[2], 'version') or '0'
if current ~= args.expectedVersion then
  return {'conflict', current}
end
if tonumber(args.version) ~= tonumber(current) + 1 then
  return redis.error_reply('ERR appendEvent: version ' .. args.version .. ' does not follow ' .. current)
end

redis.call('XADD', KEYS[1], args.version .. '-0', 'event', args.event, 'delivery', args.delivery)
redis.call('HSET', KEYS[2], 'version', args.version, 'delivery', args.delivery)
redis.call('HSET', KEYS[3], args.requestKey, args.version .. ':' .. args.fingerprint)
if args.version == '1' then
  redis.call('XADD', KEYS[4], '*', 'id', args.id)
end
redis.call('PUBLISH', args.channel, '{"event":' .. args.event .. ',"delivery":' .. args.delivery .. '}')
return {'appended', args.version}
