"""Request and response models (pydantic), kept apart from the ORM tables."""
