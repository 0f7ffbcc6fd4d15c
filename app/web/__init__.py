"""The HTTP layer: dependencies, templating, error mapping and one router per resource."""
