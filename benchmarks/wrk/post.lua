-- wrk: POST the body in WRK_BODY (none when unset), with the Content-Type in WRK_CONTENT_TYPE (none when
-- unset, as OpenKAT's runners post).
wrk.method = "POST"
local body, content_type = os.getenv("WRK_BODY"), os.getenv("WRK_CONTENT_TYPE")
if body and body ~= "" then wrk.body = body end
if content_type and content_type ~= "" then wrk.headers["Content-Type"] = content_type end
