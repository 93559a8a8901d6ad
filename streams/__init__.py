"""The runtime of TechShop Streams: settings, topics, codecs, the Faust app, the CLI."""
