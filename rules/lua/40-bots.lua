-- Adjusting the bot plugin's score. A file may define a global bot_score(req, score): it runs for
-- every request before the rules' on_request hooks, and a number it returns (clamped to 1-99)
-- becomes the request's score for the rules after it, later plugins and the access log.
function bot_score(req, score)
  -- Our own uptime probe is a bot we want: it sends a token only it knows, from the office.
  if req.headers["x-probe-token"] == "uptime-7f3a" and req.client.ip:match("^10%.1%.") then
    return 99
  end
  return score
end

return {
  {
    name = "log likely automated clients",
    match = "*",
    on_request = function(req)
      local score = req.bot.score
      if score and score < 30 then
        req:log("likely automated client, score " .. score .. ", ja4 " .. tostring(req.tls.ja4))
        req:publish("lua.suspect", "1")
      end
    end,
  },
}
