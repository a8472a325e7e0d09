"""Accounts: users and their roles (`users`), passwords and access tokens (`security`), the
login throttle (`login_throttle`), the secrets the platform makes itself (`secrets`: the token
signing key, users' webhook secrets), and the admin command (`admin`)."""
