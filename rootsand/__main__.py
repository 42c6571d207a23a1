from rootsand.cli import main

main()
