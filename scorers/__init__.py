"""TechShop Streams: scorers."""
