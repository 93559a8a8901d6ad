"""TechShop Streams: models."""
