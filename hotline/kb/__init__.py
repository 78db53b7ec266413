"""Information service (便民服务信息): knowledge articles on policy, funeral steps, eco-burial and the
公民身故一件事 bundle, kept in versions and searchable in Chinese.

- `articles`: categories, field checks, saving (every save is a new version) and reading versions.
- `terms`: the search terms of a text: CJK characters and character bigrams, Latin words and numbers.
- `search`: the term index of each article's current text and ranked search over it.

Search matches character bigrams rather than words from a segmenter such as jieba. Bigrams need no
dictionary, so a query and an article always split the same way: 海葬补贴 becomes 海葬, 葬补 and 补贴, and
matches an article that writes 海葬 and 补贴 apart or together, whereas a segmenter may cut 节地生态安葬
differently in a query and in an article unless its dictionary contains the term. The index stays small
for a few hundred articles, and it works the same on SQLite and PostgreSQL with plain SQL. Bigrams also
match some pairs across word boundaries; ranking by the number of matched terms keeps those results low.
"""
