"""Who may use the terminal: the access token, link tokens, browser logins, the Origin check."""
