"""The programme's rules, with no Telegram types: each member or staff action is one function
that takes the injected clock, applies the rules and calls storage (DESIGN.md)."""
