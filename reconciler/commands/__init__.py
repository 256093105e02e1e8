"""The `acceld` subcommands: parse options, build what they need, print results."""
