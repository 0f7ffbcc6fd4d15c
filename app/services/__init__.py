"""Business logic: takes a Session and plain arguments, returns models, raises AppError."""
