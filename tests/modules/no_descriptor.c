/* A shared object that is not a postern module: no descriptor symbol. */
int postern_not_a_module(void);

__attribute__((visibility("default"))) int
postern_not_a_module(void)
{
	return 42;
}
