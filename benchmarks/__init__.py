"""Programs that measure jaxpose against other frameworks, outside the library: jaxpose never
imports them."""
