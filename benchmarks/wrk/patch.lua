-- wrk: PATCH a popped task to running, as a runner does when one of its workers starts it; the task ids
-- are read from the file WRK_IDS names, one a line, and taken in turn (running again renews the hold).
local ids = {}
for line in io.lines(os.getenv("WRK_IDS")) do ids[#ids + 1] = line end
local counter = 0

function request()
    counter = counter + 1
    local id = ids[(counter % #ids) + 1]
    return wrk.format("PATCH", "/tasks/" .. id, {["Content-Type"] = "application/json"}, '{"status":"running"}')
end
