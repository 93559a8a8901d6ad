"""TechShop Streams: agents."""
