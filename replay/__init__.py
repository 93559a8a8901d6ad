"""TechShop Streams: replay."""
