package articles

import (
	"context"
	"fmt"

	"herald"
)

// Deleter is a Store that can delete articles. It is a separate interface
// so that an engine gains it without every Store having to.
type Deleter interface {
	// DeleteArticle deletes one article and its tags; ENOTFOUND when there
	// is none with that id.
	DeleteArticle(ctx context.Context, id int64) error
}

// Delete deletes one article: it goes into no further digest, and the
// archive copies of past issues skip it. ENOTFOUND for an unknown id;
// EUNAVAILABLE when the store cannot delete.
func (s *Service) Delete(ctx context.Context, id int64) error {
	d, ok := s.store.(Deleter)
	if !ok {
		return herald.Errorf(herald.EUNAVAILABLE, "Deleting articles is not available on this database engine.")
	}
	if err := d.DeleteArticle(ctx, id); err != nil {
		if herald.IsCode(err, herald.ENOTFOUND) {
			return herald.Errorf(herald.ENOTFOUND, "There is no article with id %d.", id)
		}
		return fmt.Errorf("delete article %d: %w", id, err)
	}
	s.logger.InfoContext(ctx, "article deleted", "article_id", id)
	return nil
}
