-- wrk: GET the URL, nothing more.
wrk.method = "GET"
