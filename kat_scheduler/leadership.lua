-- The beat's leader lease, loaded as a Redis function library (see queues/lua_library.py).
-- keys[1] is the lease key, args[1] the operation, args[2] the holder's token, args[3] the lease
-- length in ms. Only the holder of the token can renew or release.
local function main(keys, args)
    local key, op, token, lease_ms = keys[1], args[1], args[2], args[3]
    if op == "acquire" then
        if redis.call("SET", key, token, "NX", "PX", lease_ms) then return 1 end
        if redis.call("GET", key) == token then
            redis.call("PEXPIRE", key, lease_ms)
            return 1
        end
        return 0
    elseif op == "renew" then
        if redis.call("GET", key) ~= token then return 0 end
        redis.call("PEXPIRE", key, lease_ms)
        return 1
    elseif op == "release" then
        if redis.call("GET", key) ~= token then return 0 end
        redis.call("DEL", key)
        return 1
    end
    return redis.error_reply("unknown leadership operation: " .. tostring(op))
end
