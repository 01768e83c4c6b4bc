"""The unified core schema: typed entity models and the database tables derived from them."""
