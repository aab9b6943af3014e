from entrgi.run import cli

cli()
