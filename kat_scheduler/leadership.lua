-- The beat's leader lease. KEYS[1] is the lease key, ARGV[1] the operation, ARGV[2] the holder's
-- token, ARGV[3] the lease length in ms. Only the holder of the token can renew or release.
local key, op, token = KEYS[1], ARGV[1], ARGV[2]
if op == "acquire" then
    if redis.call("SET", key, token, "NX", "PX", ARGV[3]) then return 1 end
    if redis.call("GET", key) == token then
        redis.call("PEXPIRE", key, ARGV[3])
        return 1
    end
    return 0
elseif op == "renew" then
    if redis.call("GET", key) ~= token then return 0 end
    redis.call("PEXPIRE", key, ARGV[3])
    return 1
elseif op == "release" then
    if redis.call("GET", key) ~= token then return 0 end
    redis.call("DEL", key)
    return 1
end
return redis.error_reply("unknown leadership operation: " .. tostring(op))
